package mediastream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

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
	resumes int

	// rpcCancel ends the current RPC (cancel ends the stream and every RPC it
	// will resume on). reopen, set with Config.AutoResume, resumes the stream
	// on a new RPC after its connection dropped; it runs inside recv.
	rpcCancel func()
	reopen    func(*Resume) error

	// recvMu keeps Wait's own reads and Recv from overlapping (gRPC allows one
	// receive at a time); ended is closed once a receive reported the end.
	recvMu   sync.Mutex
	endOnce  sync.Once
	endedCh  chan struct{}
	initOnce sync.Once

	// flowMu guards resumed: non-nil while the server has asked the client to
	// pause (a FlowControl FlowPause seen by a receive), closed and cleared by
	// FlowResume or the end of the stream.
	flowMu  sync.Mutex
	resumed chan struct{}
}

func (s *Stream) setPaused(paused bool) {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	switch {
	case paused && s.resumed == nil:
		s.resumed = make(chan struct{})
	case !paused && s.resumed != nil:
		close(s.resumed)
		s.resumed = nil
	}
}

// pausedChan is nil when the client may send, else closed once it may again.
func (s *Stream) pausedChan() chan struct{} {
	s.flowMu.Lock()
	defer s.flowMu.Unlock()
	return s.resumed
}

// Paused reports whether the server has asked the client to pause sending
// audio (a FlowControl FlowPause received and no FlowResume since).
func (s *Stream) Paused() bool {
	return s.pausedChan() != nil
}

func (s *Stream) endedChan() chan struct{} {
	s.initOnce.Do(func() { s.endedCh = make(chan struct{}) })
	return s.endedCh
}

func (s *Stream) markEnded() {
	ch := s.endedChan()
	s.endOnce.Do(func() { close(ch) })
	// A sender waiting for FlowResume must not wait for a stream that is over.
	s.setPaused(false)
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

// adopt makes cancelAll the stream's cancel: it ends the RPC of the moment
// and any resume under way.
func (s *Stream) adopt(cancelAll func()) {
	s.rpcCancel, s.cancel = s.cancel, cancelAll
}

// replace continues the stream on next's RPC (an auto-resume). Called from
// recv, with recvMu held.
func (s *Stream) replace(next *Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rpcCancel != nil {
		s.rpcCancel() // the dropped RPC's context
	}
	s.recvMsg, s.rpcCancel, s.info = next.recvMsg, next.cancel, next.info
	s.resumes++
}

// Resumes returns how many times the stream was resumed by itself after its
// connection dropped (Config.AutoResume).
func (s *Stream) Resumes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumes
}

// droppedConnection reports whether err ends an RPC, not the stream: a
// dropped connection, which an auto-resume mends. The same codes and final
// reasons as the Python SDK's RESUMABLE and FINAL_REASONS.
func droppedConnection(err error) bool {
	var rpcErr *RPCError
	if !errors.As(err, &rpcErr) {
		return false
	}
	switch rpcErr.Code {
	case codes.Unavailable, codes.Internal, codes.Unknown:
		return rpcErr.Reason != "ASTERISK_FAILURE" && rpcErr.Reason != "DRAINING"
	}
	return false
}

// Info returns what the server confirmed when the stream started (or, after
// an auto-resume, when it resumed).
func (s *Stream) Info() StreamInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// Recv returns the next event: AudioChunk, DTMFReceived, MarkPlayed, Cleared,
// FlowControl or, last, Stopped. After Stopped (or when the server closes the
// stream without one) it returns io.EOF. A failed stream returns an *RPCError.
func (s *Stream) Recv() (Event, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	return s.recv()
}

func (s *Stream) recv() (Event, error) {
	for {
		ev, _, err := s.recvMsg()
		if err != nil && err != io.EOF && s.reopen != nil && droppedConnection(AsRPCError(err)) {
			err = s.reopen(s.ResumeFrom())
			if err == nil {
				continue
			}
		}
		if err != nil {
			s.markEnded()
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
		if f, ok := ev.(FlowControl); ok {
			s.setPaused(f.State == FlowPause)
		}
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

// Close cancels a listen-only stream if it is still running. It is safe to
// call more than once and from any goroutine. (DuplexStream.Close waits for
// the audio sent to be played when CloseSend was called first.)
func (s *Stream) Close() error {
	s.cancel()
	return nil
}

// Cancel cancels the stream at once if it is still running: nothing more is
// played or received. It is safe to call more than once and from any goroutine.
func (s *Stream) Cancel() {
	s.cancel()
}

// Wait waits until the stream has ended and returns its Stopped event (nil if
// it ended without one, for example cancelled). When no goroutine is in Recv,
// Wait reads the events itself and drops them; a goroutine that keeps calling
// Recv meanwhile may miss some. If ctx ends first, the stream is cancelled
// and Wait returns ctx's error.
func (s *Stream) Wait(ctx context.Context) (*Stopped, error) {
	stop := context.AfterFunc(ctx, s.cancel)
	defer stop()
	ended := s.endedChan()
	for {
		select {
		case <-ended:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return s.Stopped(), nil
		default:
		}
		if s.recvMu.TryLock() {
			_, err := s.recv()
			s.recvMu.Unlock()
			if err != nil && err != io.EOF && ctx.Err() == nil && s.Stopped() == nil {
				return nil, err
			}
			continue
		}
		// Another goroutine is receiving: let it see the end.
		select {
		case <-ended:
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
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
	// media is the MediaStreamService of the instance holding the stream: Clear
	// and Hangup go there (ControlStream), beside the stream. Guarded by sendMu.
	media pb.MediaStreamServiceClient
	opts  []grpc.CallOption

	// sent counts the audio chunks handed to Send, marks the Mark and SendDTMF
	// messages: a Clear names what was sent before it (read without sendMu,
	// which a Send blocked on flow control holds).
	sent, marks atomic.Uint64

	sendMu    sync.Mutex
	seq       uint64
	timestamp uint64

	closedSend bool
	playEnd    time.Time // by when the audio sent so far has played, at most
	closeGrace time.Duration
	noFlow     bool // Send does not wait while paused (SetWaitWhilePaused(false))
}

// SetWaitWhilePaused sets whether Send waits while the server has asked the
// client to pause (default true). With false, Send sends at once and the
// server buffers up to its limit (10 s of audio by default; past it the
// stream fails with RESOURCE_EXHAUSTED, reason BUFFER_FULL).
func (d *DuplexStream) SetWaitWhilePaused(wait bool) {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	d.noFlow = !wait
}

// waitWhilePaused returns when the client may send audio: at once unless the
// server has asked it to pause, then on FlowResume, at the end of the stream,
// or when its context ends. The pause is seen by receives (Recv, Wait, Close):
// a sender that nothing receives for never waits.
func (d *DuplexStream) waitWhilePaused() {
	d.sendMu.Lock()
	noFlow, rpc := d.noFlow, d.rpc
	d.sendMu.Unlock()
	if noFlow {
		return
	}
	if ch := d.pausedChan(); ch != nil {
		select {
		case <-ch:
		case <-d.endedChan():
		case <-rpc.Context().Done():
		}
	}
}

// DefaultCloseGrace is how long Close, after CloseSend, waits for Stopped
// beyond the client's estimate of the audio still to play.
const DefaultCloseGrace = 10 * time.Second

// SetCloseGrace sets how long Close, after CloseSend, waits for Stopped beyond
// the estimate of the audio still to play (default DefaultCloseGrace).
func (d *DuplexStream) SetCloseGrace(grace time.Duration) {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	d.closeGrace = grace
}

// countPlayed adds ms of audio to the play-out estimate: the server plays in
// real time from when audio arrives (a gap plays silence). Headers counted as
// audio only lengthen it, the safe side. Called with sendMu held.
func (d *DuplexStream) countPlayed(ms float64) {
	now := time.Now()
	if d.playEnd.Before(now) {
		d.playEnd = now
	}
	d.playEnd = d.playEnd.Add(time.Duration(ms * float64(time.Millisecond)))
}

func (d *DuplexStream) bytesPerMS() float64 {
	switch d.Info().Format {
	case FormatSLIN:
		return 16
	case FormatSLIN16:
		return 32
	}
	return 8
}

// Close closes the stream; it is what `defer stream.Close()` should do.
// After CloseSend it waits until the server has played what was sent and
// sent Stopped (see Wait), at most the estimated audio still to play plus the
// close grace (DefaultCloseGrace); then, or at once without CloseSend, the
// stream is cancelled if still running. It returns an error wrapping
// context.DeadlineExceeded if the bound passed first.
func (d *DuplexStream) Close() error {
	d.sendMu.Lock()
	closedSend, bound := d.closedSend, time.Until(d.playEnd)+d.closeGrace
	d.sendMu.Unlock()
	defer d.cancel()
	if !closedSend || d.Stopped() != nil {
		return nil
	}
	if bound < 0 {
		bound = 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if _, err := d.Wait(ctx); err != nil && ctx.Err() != nil {
		return fmt.Errorf("mediastream: no Stopped within %v of closing after CloseSend; stream cancelled: %w", bound, err)
	}
	return nil
}

func (d *DuplexStream) send(req *pb.StreamMediaRequest) error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return AsRPCError(d.rpc.Send(req))
}

// Send sends one chunk of audio to be played, in the stream's format and
// encapsulation (normally Info().ChunkBytes() bytes). It first waits while
// the server has asked the client to pause (FlowControl FlowPause, until
// FlowResume), as the Python and TypeScript SDKs do: a sender may go as fast
// as it likes provided another goroutine is receiving the events, where the
// pause is seen. SetWaitWhilePaused(false) turns the wait off. Send returns
// once gRPC has taken the message, not when it has played (Mark reports that).
// Control (Clear, Mark, SendDTMF, Hangup, CloseSend) never waits for a pause.
func (d *DuplexStream) Send(audio []byte) error {
	d.waitWhilePaused()
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	// Counted before the write: a chunk under way when Clear is called was sent before it.
	d.sent.Store(d.seq + 1)
	chunk := &pb.AudioChunk{Data: audio, SequenceNumber: d.seq, Timestamp: d.timestamp}
	if err := d.rpc.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Audio{Audio: chunk}}); err != nil {
		return AsRPCError(err)
	}
	d.seq++
	d.timestamp += uint64(d.samplesIn(audio))
	d.countPlayed(float64(len(audio)) / d.bytesPerMS())
	return nil
}

// samplesIn is the number of samples in one chunk sent by the client.
func (d *DuplexStream) samplesIn(audio []byte) int {
	if d.Info().Encapsulation == EncapsulationSLN || d.Info().Encapsulation == EncapsulationUnspecified {
		if d.Info().Format == FormatULAW {
			return len(audio)
		}
		return len(audio) / 2
	}
	return int(d.Info().SampleRateHz) * int(d.Info().ChunkMS) / 1000
}

// SendDTMF sends DTMF digits (0-9, *, #, A-D) into the call, on the stream,
// after the audio sent so far. A zero duration means 100 ms per digit.
func (d *DuplexStream) SendDTMF(digits string, duration time.Duration) error {
	d.marks.Add(1)
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	err := d.rpc.Send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Dtmf{
		Dtmf: &pb.SendDtmf{Digits: digits, DurationMs: uint32(duration / time.Millisecond)},
	}})
	if err != nil {
		return AsRPCError(err)
	}
	each := duration
	if each == 0 {
		each = 100 * time.Millisecond
	}
	// Each digit plays for its duration and a gap.
	d.countPlayed(float64(len(digits)) * float64(each+100*time.Millisecond) / float64(time.Millisecond))
	return nil
}

// Mark asks for a MarkPlayed event named name once everything sent before it
// has been played.
func (d *DuplexStream) Mark(name string) error {
	d.marks.Add(1)
	return d.send(&pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Mark{Mark: &pb.Mark{Name: name}}})
}

// Clear drops all audio sent so far that has not played (barge-in); the
// server reports it with a Cleared event on the stream, as before.
//
// It goes beside the stream (the ControlStream RPC), not on it, so it never
// waits behind audio sent before it that the server has not read yet (after a
// burst of 60 s, an in-stream clear waited hundreds of ms); that audio, and the
// marks among it, are dropped as the server reads them. Clear returns once the
// server has cut playback. On an ended stream it returns io.EOF, as a write does.
func (d *DuplexStream) Clear() error {
	req := &pb.ControlStreamRequest{
		Command:          &pb.ControlStreamRequest_Clear{Clear: &pb.Clear{}},
		MarksAndDtmfSent: d.marks.Load(),
	}
	if n := d.sent.Load(); n > 0 {
		last := n - 1
		req.LastSentSequenceNumber = &last
	}
	if err := d.control(req); err != nil {
		return err
	}
	d.sendMu.Lock()
	d.playEnd = time.Time{}
	d.sendMu.Unlock()
	return nil
}

// Hangup hangs up the call the stream is attached to, at once: beside the
// stream (ControlStream), never behind audio sent before it. On a conference
// it returns an *RPCError (FailedPrecondition, NOT_A_CALL) and the stream
// goes on.
func (d *DuplexStream) Hangup() error {
	return d.control(&pb.ControlStreamRequest{Command: &pb.ControlStreamRequest_Hangup{Hangup: &pb.HangupCall{}}})
}

// controlTimeout bounds one ControlStream call (Clear, Hangup).
const controlTimeout = 10 * time.Second

// control sends req to the instance holding the stream, with the stream's
// credentials and target header (the stream's context carries both).
func (d *DuplexStream) control(req *pb.ControlStreamRequest) error {
	d.sendMu.Lock()
	media, rpc, opts := d.media, d.rpc, d.opts
	d.sendMu.Unlock()
	if d.Stopped() != nil || rpc.Context().Err() != nil {
		return io.EOF // the stream is over, as a write on it would say
	}
	req.StreamId = d.Info().StreamID
	ctx, cancel := context.WithTimeout(rpc.Context(), controlTimeout)
	defer cancel()
	if _, err := media.ControlStream(ctx, req, opts...); err != nil {
		if rpc.Context().Err() != nil {
			return io.EOF
		}
		return AsRPCError(err)
	}
	return nil
}

// CloseSend ends the client's input and returns at once, without waiting for
// the audio to play: the server plays what it accepted, then sends Stopped
// (StopReasonClientDone) and ends the stream. Read Recv until io.EOF, or call
// Wait, or just Close (which waits after CloseSend).
func (d *DuplexStream) CloseSend() error {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	if err := d.rpc.CloseSend(); err != nil {
		return AsRPCError(err)
	}
	d.closedSend = true
	return nil
}

// AudioWriter returns an io.WriteCloser that cuts what is written into
// chunks of Info().ChunkBytes() bytes and sends them. Close sends the rest
// (a shorter chunk) and calls CloseSend. The stream must carry bare samples.
func (d *DuplexStream) AudioWriter() io.WriteCloser {
	return &audioWriter{d: d, size: d.Info().ChunkBytes()}
}

type audioWriter struct {
	d    *DuplexStream
	size int
	buf  []byte
}

func (w *audioWriter) check() error {
	if e := w.d.Info().Encapsulation; e != EncapsulationSLN && e != EncapsulationUnspecified {
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
	return DTMFReceived{Digit: d.GetDigit(), Duration: ms(uint64(d.GetDurationMs()))}
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
