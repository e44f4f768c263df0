package mediastream

import (
	"io"
	"sync"
	"time"

	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// Stream is a listen-only stream: Recv returns the call's audio and events.
// Recv must not be called from more than one goroutine at a time.
type Stream struct {
	info    StreamInfo
	cancel  func()
	recvMsg func() (Event, *pb.StreamStarted, error)

	mu      sync.Mutex
	stopped *Stopped
	lastSeq *uint64
}

// start reads the server's confirmation.
func (s *Stream) start() error {
	_, started, err := s.recvMsg()
	if err == io.EOF {
		s.cancel()
		return protocolError("the stream ended before the server confirmed it")
	}
	if err != nil {
		s.cancel()
		return AsRPCError(err)
	}
	if started == nil {
		s.cancel()
		return protocolError("the server's first message was not started")
	}
	s.info = StreamInfo{
		StreamID:         started.GetStreamId(),
		Format:           started.GetFormat(),
		SampleRateHz:     started.GetSampleRateHz(),
		FrameBytes:       started.GetFrameBytes(),
		ChunkMS:          started.GetChunkMs(),
		Encapsulation:    started.GetEncapsulation(),
		Transport:        started.GetTransport(),
		ResumeToken:      started.GetResumeToken(),
		Resumed:          started.GetResumed(),
		BufferHighChunks: started.GetBufferHighChunks(),
		InstanceAddress:  started.GetInstanceAddress(),
	}
	return nil
}

// Info returns what the server confirmed when the stream started.
func (s *Stream) Info() StreamInfo {
	return s.info
}

// Recv returns the next event: AudioChunk, DTMF, MarkPlayed, Cleared,
// FlowControl or, last, Stopped. After Stopped (or when the server closes the
// stream without one) it returns io.EOF. A failed stream returns an *RPCError.
func (s *Stream) Recv() (Event, error) {
	for {
		ev, _, err := s.recvMsg()
		if err != nil {
			return nil, AsRPCError(err)
		}
		if ev == nil {
			continue // a message kind this client does not know
		}
		s.mu.Lock()
		switch e := ev.(type) {
		case AudioChunk:
			seq := e.SequenceNumber
			s.lastSeq = &seq
		case Stopped:
			s.stopped = &e
		}
		s.mu.Unlock()
		return ev, nil
	}
}

// Stopped returns the stream's Stopped event, or nil if Recv has not returned it.
func (s *Stream) Stopped() *Stopped {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// ResumeFrom returns the Resume for a Config that continues this stream on a
// new connection: its token, the last audio sequence number received, and the
// address of the gateway instance holding the stream (which Client.Listen and
// Client.Stream dial directly when the gateway runs behind a load balancer).
func (s *Stream) ResumeFrom() *Resume {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &Resume{Token: s.info.ResumeToken, InstanceAddress: s.info.InstanceAddress}
	if s.lastSeq != nil {
		seq := *s.lastSeq
		r.LastSequenceNumber = &seq
	}
	return r
}

// Close cancels the stream if it is still running. It is safe to call more
// than once and from any goroutine.
func (s *Stream) Close() error {
	s.cancel()
	return nil
}

// AudioReader returns an io.Reader of the stream's audio bytes, in the
// stream's format and encapsulation. It consumes the stream: other events are
// dropped, and Read returns io.EOF once the stream has stopped. Do not mix it
// with Recv.
func (s *Stream) AudioReader() io.Reader {
	return &audioReader{recv: s.Recv}
}

type audioReader struct {
	recv func() (Event, error)
	buf  []byte
}

func (r *audioReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		ev, err := r.recv()
		if err != nil {
			return 0, err
		}
		if chunk, ok := ev.(AudioChunk); ok {
			r.buf = chunk.Data
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// DuplexStream is a two-way stream: Recv returns the call's audio and events;
// Send and the other methods talk into the call. Recv must not be called from
// more than one goroutine at a time; the sending methods are safe for
// concurrent use with each other and with Recv.
//
// When a sending method returns io.EOF the server has ended the stream, and
// Recv returns why.
type DuplexStream struct {
	Stream
	rpc pb.MediaStreamService_StreamMediaClient

	sendMu    sync.Mutex
	seq       uint64
	timestamp uint64
}

func (d *DuplexStream) send(req *pb.StreamMediaRequest) error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return AsRPCError(d.rpc.Send(req))
}

// Send sends one chunk of audio to be played, in the stream's format and
// encapsulation (normally Info().ChunkBytes() bytes). The server paces it;
// honour FlowControl events to bound what it buffers.
func (d *DuplexStream) Send(audio []byte) error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	chunk := &pb.AudioChunk{Data: audio, SequenceNumber: d.seq, Timestamp: d.timestamp}
	if err := d.rpc.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Audio{Audio: chunk}}); err != nil {
		return AsRPCError(err)
	}
	d.seq++
	d.timestamp += uint64(d.samplesIn(audio))
	return nil
}

// samplesIn is the number of samples in one chunk sent by the client.
func (d *DuplexStream) samplesIn(audio []byte) int {
	if d.info.Encapsulation == EncapsulationSLN || d.info.Encapsulation == EncapsulationUnspecified {
		if d.info.Format == FormatULAW {
			return len(audio)
		}
		return len(audio) / 2
	}
	return int(d.info.SampleRateHz) * int(d.info.ChunkMS) / 1000
}

// SendDTMF sends DTMF digits (0-9, *, #, A-D) into the call. A zero duration
// means 100 ms per digit.
func (d *DuplexStream) SendDTMF(digits string, duration time.Duration) error {
	return d.send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Dtmf{
		Dtmf: &pb.SendDtmf{Digits: digits, DurationMs: uint32(duration / time.Millisecond)},
	}})
}

// Mark asks for a MarkPlayed event named name once everything sent before it
// has been played.
func (d *DuplexStream) Mark(name string) error {
	return d.send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Mark{Mark: &pb.Mark{Name: name}}})
}

// Clear drops all audio queued for playing (barge-in); the server answers
// with a Cleared event.
func (d *DuplexStream) Clear() error {
	return d.send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Clear{Clear: &pb.Clear{}}})
}

// Hangup hangs up the call the stream is attached to.
func (d *DuplexStream) Hangup() error {
	return d.send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Hangup{Hangup: &pb.HangupCall{}}})
}

// CloseSend ends the client's input: the server plays what it accepted, then
// sends Stopped (StopReasonClientDone) and ends the stream.
func (d *DuplexStream) CloseSend() error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return AsRPCError(d.rpc.CloseSend())
}

// AudioWriter returns an io.WriteCloser that cuts what is written into
// chunks of Info().ChunkBytes() bytes and sends them. Close sends the rest
// (a shorter chunk) and calls CloseSend. The stream must carry bare samples.
func (d *DuplexStream) AudioWriter() io.WriteCloser {
	return &audioWriter{d: d, size: d.info.ChunkBytes()}
}

type audioWriter struct {
	d    *DuplexStream
	size int
	buf  []byte
}

func (w *audioWriter) check() error {
	if e := w.d.info.Encapsulation; e != EncapsulationSLN && e != EncapsulationUnspecified {
		return ErrEncapsulation
	}
	return nil
}

func (w *audioWriter) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(w.buf)+len(p) >= w.size {
		take := w.size - len(w.buf)
		chunk := make([]byte, 0, w.size)
		chunk = append(append(chunk, w.buf...), p[:take]...)
		if err := w.d.Send(chunk); err != nil {
			return n - len(p), err
		}
		w.buf, p = w.buf[:0], p[take:]
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

func (w *audioWriter) Close() error {
	if err := w.check(); err != nil {
		return err
	}
	if len(w.buf) > 0 {
		if err := w.d.Send(w.buf); err != nil {
			return err
		}
		w.buf = nil
	}
	return w.d.CloseSend()
}

func ms(v uint64) time.Duration {
	return time.Duration(v) * time.Millisecond
}

func stopped(s *pb.StreamStopped) Stopped {
	return Stopped{Reason: s.GetReason(), Detail: s.GetDetail()}
}

func audio(a *pb.AudioChunk) AudioChunk {
	return AudioChunk{Data: a.GetData(), SequenceNumber: a.GetSequenceNumber(), Timestamp: a.GetTimestamp()}
}

func dtmf(d *pb.DtmfReceived) DTMF {
	return DTMF{Digit: d.GetDigit(), Duration: ms(uint64(d.GetDurationMs()))}
}

// listenEvent converts a ListenMedia message; started and unknown kinds are nil.
func listenEvent(msg *pb.ListenMediaResponse) Event {
	switch p := msg.GetPayload().(type) {
	case *pb.ListenMediaResponse_Audio:
		return audio(p.Audio)
	case *pb.ListenMediaResponse_Dtmf:
		return dtmf(p.Dtmf)
	case *pb.ListenMediaResponse_Stopped:
		return stopped(p.Stopped)
	}
	return nil
}

// streamEvent converts a StreamMedia message; started and unknown kinds are nil.
func streamEvent(msg *pb.StreamMediaResponse) Event {
	switch p := msg.GetPayload().(type) {
	case *pb.StreamMediaResponse_Audio:
		return audio(p.Audio)
	case *pb.StreamMediaResponse_Dtmf:
		return dtmf(p.Dtmf)
	case *pb.StreamMediaResponse_Mark:
		return MarkPlayed{Name: p.Mark.GetName(), Position: ms(p.Mark.GetPositionMs())}
	case *pb.StreamMediaResponse_Cleared:
		return Cleared{Position: ms(p.Cleared.GetPositionMs()), DroppedMarks: p.Cleared.GetDroppedMarks()}
	case *pb.StreamMediaResponse_Flow:
		return FlowControl{State: p.Flow.GetState(), Buffered: ms(p.Flow.GetBufferedMs())}
	case *pb.StreamMediaResponse_Stopped:
		return stopped(p.Stopped)
	}
	return nil
}
