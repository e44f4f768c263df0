package mediastream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	pb "github.com/voipbin/mediastream/sdk/go/mediastreamv1"
)

// fakeServer is an in-process MediaStreamService: it refuses the call "missing"
// with rich details, and on StreamMedia echoes every request as an event.
type fakeServer struct {
	pb.UnimplementedMediaStreamServiceServer
	received chan *pb.AudioChunk
	// controls carries ControlStream commands to the running StreamMedia, which
	// answers them as the same commands on the stream; controlled keeps them.
	controls   chan *pb.StreamMediaRequest
	controlled chan *pb.ControlStreamRequest
}

func (f *fakeServer) ControlStream(ctx context.Context, req *pb.ControlStreamRequest) (*pb.ControlStreamResponse, error) {
	f.controlled <- req
	switch c := req.GetCommand().(type) {
	case *pb.ControlStreamRequest_Clear:
		f.controls <- &pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Clear{Clear: c.Clear}}
		return &pb.ControlStreamResponse{Result: &pb.ControlStreamResponse_Cleared{Cleared: &pb.Cleared{PositionMs: 60}}}, nil
	case *pb.ControlStreamRequest_Hangup:
		f.controls <- &pb.StreamMediaRequest{Payload: &pb.StreamMediaRequest_Hangup{Hangup: c.Hangup}}
	}
	return &pb.ControlStreamResponse{}, nil
}

func notFound(callID string) error {
	st, _ := status.New(codes.NotFound, "no such call").WithDetails(
		&errdetails.ErrorInfo{Reason: "CALL_NOT_FOUND", Domain: "test", Metadata: map[string]string{"call_id": callID}},
	)
	return st.Err()
}

func started(cfg *pb.StreamConfig) *pb.StreamStarted {
	return &pb.StreamStarted{StreamId: "s1", Format: cfg.GetFormat(), SampleRateHz: 8000, FrameBytes: 320,
		ChunkMs: max(cfg.GetChunkMs(), 20), Encapsulation: pb.Encapsulation_ENCAPSULATION_SLN, ResumeToken: "tok"}
}

func (f *fakeServer) ListenMedia(req *pb.ListenMediaRequest, srv grpc.ServerStreamingServer[pb.ListenMediaResponse]) error {
	if req.GetConfig().GetCallId() == "missing" {
		return notFound("missing")
	}
	if req.GetConfig().GetChunkMs() == 30 {
		st, _ := status.New(codes.InvalidArgument, "bad chunk").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "config.chunk_ms", Description: "multiple of 20"}},
		})
		return st.Err()
	}
	srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Started{Started: started(req.GetConfig())}})
	for i := range 3 {
		data := bytes.Repeat([]byte{byte(i)}, 320)
		srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Audio{Audio: &pb.AudioChunk{Data: data, SequenceNumber: uint64(i), Timestamp: uint64(160 * i)}}})
	}
	srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Dtmf{Dtmf: &pb.DtmfReceived{Digit: "5", DurationMs: 120}}})
	return srv.Send(&pb.ListenMediaResponse{Payload: &pb.ListenMediaResponse_Stopped{Stopped: &pb.StreamStopped{Reason: pb.StopReason_STOP_REASON_CALL_HANGUP, Detail: "bye"}}})
}

func (f *fakeServer) StreamMedia(srv grpc.BidiStreamingServer[pb.StreamMediaRequest, pb.StreamMediaResponse]) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	srv.Send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Started{Started: started(first.GetConfig())}})
	type received struct {
		req *pb.StreamMediaRequest
		err error
	}
	requests := make(chan received)
	go func() {
		for {
			req, err := srv.Recv()
			select {
			case requests <- received{req, err}:
			case <-srv.Context().Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		var req *pb.StreamMediaRequest
		select {
		case r := <-requests:
			if r.err == io.EOF {
				return srv.Send(&pb.StreamMediaResponse{Payload: &pb.StreamMediaResponse_Stopped{Stopped: &pb.StreamStopped{Reason: pb.StopReason_STOP_REASON_CLIENT_DONE}}})
			}
			if r.err != nil {
				return r.err
			}
			req = r.req
		case req = <-f.controls:
		case <-srv.Context().Done():
			return srv.Context().Err()
		}
		var resp pb.StreamMediaResponse
		switch p := req.GetPayload().(type) {
		case *pb.StreamMediaRequest_Audio:
			f.received <- p.Audio
			resp.Payload = &pb.StreamMediaResponse_Audio{Audio: p.Audio}
		case *pb.StreamMediaRequest_Dtmf:
			resp.Payload = &pb.StreamMediaResponse_Dtmf{Dtmf: &pb.DtmfReceived{Digit: p.Dtmf.GetDigits(), DurationMs: p.Dtmf.GetDurationMs()}}
		case *pb.StreamMediaRequest_Mark:
			resp.Payload = &pb.StreamMediaResponse_Mark{Mark: &pb.MarkPlayed{Name: p.Mark.GetName(), PositionMs: 40}}
			if p.Mark.GetName() == "resume" { // the tests' way to make the server send RESUME
				resp.Payload = &pb.StreamMediaResponse_Flow{Flow: &pb.FlowControl{State: pb.FlowState_FLOW_STATE_RESUME, BufferedMs: 3980}}
			}
		case *pb.StreamMediaRequest_Clear:
			resp.Payload = &pb.StreamMediaResponse_Cleared{Cleared: &pb.Cleared{PositionMs: 60, DroppedMarks: []string{"a", "b"}}}
		case *pb.StreamMediaRequest_Hangup:
			resp.Payload = &pb.StreamMediaResponse_Flow{Flow: &pb.FlowControl{State: pb.FlowState_FLOW_STATE_PAUSE, BufferedMs: 80}}
		}
		if err := srv.Send(&resp); err != nil {
			return err
		}
	}
}

func fakeClient(t *testing.T) (*mediastream.Client, *fakeServer) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	fake := &fakeServer{received: make(chan *pb.AudioChunk, 100), controls: make(chan *pb.StreamMediaRequest, 10),
		controlled: make(chan *pb.ControlStreamRequest, 100)}
	pb.RegisterMediaStreamServiceServer(srv, fake)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///fake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop() })
	return mediastream.NewClient(conn), fake
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestListenDeliversTypedEventsThenEOF(t *testing.T) {
	client, _ := fakeClient(t)
	stream, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if info := stream.Info(); info.StreamID != "s1" || info.ChunkBytes() != 320 || info.ResumeToken != "tok" {
		t.Fatalf("Info() = %+v", info)
	}
	var got []mediastream.Event
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 5 {
		t.Fatalf("got %d events: %#v", len(got), got)
	}
	if a := got[2].(mediastream.AudioChunk); a.SequenceNumber != 2 || a.Timestamp != 320 || len(a.Data) != 320 || a.Data[0] != 2 {
		t.Errorf("third chunk = seq %d ts %d len %d", a.SequenceNumber, a.Timestamp, len(a.Data))
	}
	if d := got[3].(mediastream.DTMFReceived); d.Digit != "5" || d.Duration != 120*time.Millisecond {
		t.Errorf("dtmf = %+v", d)
	}
	want := mediastream.Stopped{Reason: mediastream.StopReasonCallHangup, Detail: "bye"}
	if s := got[4].(mediastream.Stopped); s != want || *stream.Stopped() != want {
		t.Errorf("stopped = %+v", s)
	}
	if r := stream.ResumeFrom(); r.Token != "tok" || r.LastSequenceNumber == nil || *r.LastSequenceNumber != 2 {
		t.Errorf("ResumeFrom() = %+v", r)
	}
}

func TestAudioReaderReturnsOnlyAudioBytes(t *testing.T) {
	client, _ := fakeClient(t)
	stream, err := client.Listen(testContext(t), mediastream.Config{CallID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(stream.AudioReader())
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(bytes.Repeat([]byte{0}, 320), bytes.Repeat([]byte{1}, 320)...), bytes.Repeat([]byte{2}, 320)...)
	if !bytes.Equal(data, want) {
		t.Errorf("read %d bytes, want the 960 bytes of three chunks", len(data))
	}
}

func TestErrorsCarryStatusDetails(t *testing.T) {
	client, _ := fakeClient(t)
	_, err := client.Listen(testContext(t), mediastream.Config{CallID: "missing"})
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) {
		t.Fatalf("err = %v (%T), want *RPCError", err, err)
	}
	if rpcErr.Code != codes.NotFound || rpcErr.Reason != "CALL_NOT_FOUND" || rpcErr.Domain != "test" || rpcErr.Metadata["call_id"] != "missing" {
		t.Errorf("err = %+v", rpcErr)
	}
	if status.Code(err) != codes.NotFound {
		t.Errorf("status.Code(err) = %v", status.Code(err))
	}
	_, err = client.Listen(testContext(t), mediastream.Config{CallID: "c", ChunkMS: 30})
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.InvalidArgument || rpcErr.Field() != "config.chunk_ms" || rpcErr.FieldViolations[0].Description != "multiple of 20" {
		t.Errorf("err = %+v", err)
	}
	if _, err := client.Listen(testContext(t), mediastream.Config{CallID: "c", ConferenceID: "d"}); !errors.Is(err, mediastream.ErrBothTargets) {
		t.Errorf("both targets: err = %v", err)
	}
}

func TestDuplexSendsEveryKindOfRequest(t *testing.T) {
	client, fake := fakeClient(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: "c", Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	steps := []struct {
		send func() error
		want mediastream.Event
	}{
		{func() error { return stream.SendDTMF("7", 90*time.Millisecond) }, mediastream.DTMFReceived{Digit: "7", Duration: 90 * time.Millisecond}},
		{func() error { return stream.Mark("m") }, mediastream.MarkPlayed{Name: "m", Position: 40 * time.Millisecond}},
		{func() error { return stream.Hangup() }, mediastream.FlowControl{State: mediastream.FlowPause, Buffered: 80 * time.Millisecond}},
	}
	for _, step := range steps {
		if err := step.send(); err != nil {
			t.Fatal(err)
		}
		ev, err := stream.Recv()
		if err != nil || ev != step.want {
			t.Errorf("got %#v, %v; want %#v", ev, err, step.want)
		}
	}
	stream.SetWaitWhilePaused(false) // the fake answered the hangup with PAUSE
	if err := stream.Send(make([]byte, 320)); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil { // the echo
		t.Fatal(err)
	}
	if err := stream.Clear(); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if c, ok := ev.(mediastream.Cleared); err != nil || !ok || c.Position != 60*time.Millisecond || len(c.DroppedMarks) != 2 {
		t.Errorf("cleared: %#v, %v", ev, err)
	}
	// Hangup and Clear went beside the stream (ControlStream), naming the stream;
	// the clear names what was sent before it: chunk 0, one DTMF and one mark.
	if hangup := <-fake.controlled; hangup.GetStreamId() != "s1" || hangup.GetHangup() == nil {
		t.Errorf("hangup: %v", hangup)
	}
	clear := <-fake.controlled
	if clear.GetStreamId() != "s1" || clear.GetClear() == nil || clear.LastSentSequenceNumber == nil ||
		clear.GetLastSentSequenceNumber() != 0 || clear.GetMarksAndDtmfSent() != 2 {
		t.Errorf("clear: %v", clear)
	}
}

func TestAudioWriterCutsChunksAndCloseEndsInput(t *testing.T) {
	client, fake := fakeClient(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: "c", Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	w := stream.AudioWriter()
	payload := make([]byte, 1000) // 3 chunks of 320 and 40 bytes left
	for i := range payload {
		payload[i] = byte(i)
	}
	if _, err := w.Write(payload[:500]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload[500:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i := range 4 {
		chunk := <-fake.received
		if chunk.GetSequenceNumber() != uint64(i) || chunk.GetTimestamp() != uint64(160*i) {
			t.Errorf("chunk %d: seq %d ts %d", i, chunk.GetSequenceNumber(), chunk.GetTimestamp())
		}
		got = append(got, chunk.GetData()...)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("the server got %d bytes that differ from what was written", len(got))
	}
	var last mediastream.Event
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = ev
	}
	if s, ok := last.(mediastream.Stopped); !ok || s.Reason != mediastream.StopReasonClientDone {
		t.Errorf("last event = %#v", last)
	}
}

func TestConfigErrorsCarryTheServersReasons(t *testing.T) {
	client, _ := fakeClient(t)
	for _, tc := range []struct {
		cfg    mediastream.Config
		reason string
	}{
		{mediastream.Config{Format: mediastream.FormatSLIN}, "MISSING_TARGET"},
		{mediastream.Config{CallID: "c", ConferenceID: "d"}, "BOTH_TARGETS"},
	} {
		_, err := client.Stream(testContext(t), tc.cfg)
		var cfgErr *mediastream.ConfigError
		if !errors.As(err, &cfgErr) || cfgErr.Reason != tc.reason || cfgErr.Field != "config.target" {
			t.Errorf("%+v: err = %v, want a *ConfigError %s on config.target", tc.cfg, err, tc.reason)
		}
	}
}

func TestRPCErrorUnwrapsToContextErrors(t *testing.T) {
	client, _ := fakeClient(t)
	ctx, cancel := context.WithCancel(testContext(t))
	stream, err := client.Stream(ctx, mediastream.Config{CallID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for err == nil {
		_, err = stream.Recv()
	}
	var rpcErr *mediastream.RPCError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &rpcErr) || rpcErr.Code != codes.Canceled {
		t.Errorf("after cancel: err = %v (%T), want an *RPCError that is context.Canceled", err, err)
	}
	ctx, cancel = context.WithTimeout(testContext(t), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err = client.Listen(ctx, mediastream.Config{CallID: "c"})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("after the deadline: err = %v, want one that is context.DeadlineExceeded", err)
	}
	_, err = client.Listen(testContext(t), mediastream.Config{CallID: "missing"})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("NOT_FOUND unwraps to a context error: %v", err)
	}
}

func TestSendWaitsWhilePaused(t *testing.T) {
	client, fake := fakeClient(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: "c", Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Cancel()
	recv := func() mediastream.Event {
		t.Helper()
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if err := stream.Hangup(); err != nil { // the fake answers with PAUSE
		t.Fatal(err)
	}
	if ev := recv(); ev != (mediastream.FlowControl{State: mediastream.FlowPause, Buffered: 80 * time.Millisecond}) || !stream.Paused() {
		t.Fatalf("got %#v, paused %v", ev, stream.Paused())
	}
	sent := make(chan error, 1)
	go func() { sent <- stream.Send(make([]byte, 320)) }()
	// Control never waits for a pause: this mark goes out while the audio waits,
	// and comes back before any audio reached the server.
	if err := stream.Mark("m"); err != nil {
		t.Fatal(err)
	}
	if ev := recv(); ev != (mediastream.MarkPlayed{Name: "m", Position: 40 * time.Millisecond}) {
		t.Fatalf("got %#v", ev)
	}
	select {
	case chunk := <-fake.received:
		t.Fatalf("audio (%d bytes) was sent while the stream was paused", len(chunk.GetData()))
	case err := <-sent:
		t.Fatalf("Send returned (%v) while the stream was paused", err)
	default:
	}
	if err := stream.Mark("resume"); err != nil { // the fake answers with RESUME
		t.Fatal(err)
	}
	if ev := recv(); ev != (mediastream.FlowControl{State: mediastream.FlowResume, Buffered: 3980 * time.Millisecond}) || stream.Paused() {
		t.Fatalf("got %#v, paused %v", ev, stream.Paused())
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	<-fake.received
	recv() // the fake's echo of the audio
	// With the wait off, Send goes out at once while paused.
	stream.SetWaitWhilePaused(false)
	if err := stream.Hangup(); err != nil {
		t.Fatal(err)
	}
	recv()
	if err := stream.Send(make([]byte, 320)); err != nil {
		t.Fatal(err)
	}
	<-fake.received
}

func TestSendWaitingForResumeReturnsWhenTheStreamEnds(t *testing.T) {
	client, _ := fakeClient(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Hangup(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil || !stream.Paused() {
		t.Fatalf("recv: %v, paused %v", err, stream.Paused())
	}
	sent := make(chan error, 1)
	go func() { sent <- stream.Send(make([]byte, 160)) }()
	stream.Cancel()
	if err := <-sent; err == nil {
		t.Error("Send on a cancelled stream returned no error")
	}
}
