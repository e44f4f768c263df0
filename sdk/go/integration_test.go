package mediastream_test

import (
	"context"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/audiotest"
	"github.com/voipbin/mediastream/sdk/go/internal/gatewaytest"
)

// These tests run against the real gateway and its Asterisk emulator.

func TestGatewayToneCallIs440Hz(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Listen(testContext(t), mediastream.Config{CallID: gw.Demo["tone_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if info := stream.Info(); info.SampleRateHz != 8000 || info.FrameBytes != 320 || info.ChunkMS != 20 {
		t.Fatalf("Info() = %+v", info)
	}
	pcm := make([]byte, 8000*2*6/5) // 1.2 s
	if _, err := io.ReadFull(stream.AudioReader(), pcm); err != nil {
		t.Fatal(err)
	}
	samples := audiotest.FromPCM16(pcm)
	if hz := audiotest.DominantHz(samples, 8000); math.Abs(hz-440) > 3 {
		t.Errorf("dominant frequency %.1f Hz, want 440", hz)
	}
	if lvl := audiotest.ToneLevel(samples, 8000, 440); lvl < 5000 {
		t.Errorf("440 Hz level %.0f, want > 5000", lvl)
	}
}

func TestGatewayEchoCallReturnsWhatIsSent(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	received := make(chan []byte, 1)
	recvErr := make(chan error, 1)
	go func() {
		var got []byte
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				received <- got
				return
			}
			if err != nil {
				recvErr <- err
				return
			}
			if a, ok := ev.(mediastream.AudioChunk); ok {
				got = append(got, a.Data...)
			}
		}
	}()
	w := stream.AudioWriter()
	if _, err := w.Write(audiotest.PCM16(audiotest.Sine(1000, 1000, 8000, 8000))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var back []byte
	select {
	case back = <-received:
	case err := <-recvErr:
		t.Fatal(err)
	}
	if s := stream.Stopped(); s == nil || s.Reason != mediastream.StopReasonClientDone {
		t.Errorf("Stopped() = %+v, want CLIENT_DONE", s)
	}
	samples := audiotest.FromPCM16(back)
	if hz := audiotest.DominantHz(samples, 8000); math.Abs(hz-1000) > 3 {
		t.Errorf("echo's dominant frequency %.1f Hz, want 1000", hz)
	}
	// One second of an 8000-amplitude tone within the returned audio.
	if lvl := audiotest.ToneLevel(samples, 8000, 1000) * float64(len(samples)) / 8000; lvl < 0.3*8000 {
		t.Errorf("echo carries too little of the tone: %.0f", lvl)
	}
}

func TestGatewayUnknownCallIsNotFound(t *testing.T) {
	client, _ := dialGateway(t)
	_, err := client.Listen(testContext(t), mediastream.Config{CallID: "no-such-call"})
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) {
		t.Fatalf("err = %v, want *RPCError", err)
	}
	if rpcErr.Code != codes.NotFound || rpcErr.Reason != "CALL_NOT_FOUND" || rpcErr.Metadata["call_id"] != "no-such-call" {
		t.Errorf("err = %+v", rpcErr)
	}
	if rpcErr.Domain == "" {
		t.Error("ErrorInfo.domain is empty")
	}
}

func TestGatewayBadChunkMSNamesTheField(t *testing.T) {
	client, gw := dialGateway(t)
	_, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["tone_call"], ChunkMS: 30})
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) {
		t.Fatalf("err = %v, want *RPCError", err)
	}
	if rpcErr.Code != codes.InvalidArgument || len(rpcErr.FieldViolations) != 1 || rpcErr.Field() != "config.chunk_ms" {
		t.Errorf("err = %+v", rpcErr)
	}
}

// Closing a two-way stream (issue 16): after CloseSend, Close waits until what
// was sent has played. The lower bound (0.9 s for 1 s of audio) is what shows
// it waited; the upper one is generous for a loaded machine.
func TestGatewayCloseAfterCloseSendWaitsForTheAudio(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 320)
	for i := 0; i < 50; i++ {
		if err := stream.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := stream.Close(); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond || waited > 15*time.Second {
		t.Errorf("Close waited %v, want about 1 s", waited)
	}
	if s := stream.Stopped(); s == nil || s.Reason != mediastream.StopReasonClientDone {
		t.Errorf("Stopped() = %+v, want CLIENT_DONE", s)
	}
}

func TestGatewayCloseWithoutCloseSendCancels(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 320)
	for i := 0; i < 50; i++ {
		if err := stream.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := stream.Close(); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 500*time.Millisecond {
		t.Errorf("Close took %v, want at once", waited)
	}
	_, err = stream.Recv()
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.Canceled {
		t.Errorf("Recv after Close = %v, want CANCELLED", err)
	}
}

func TestGatewayWaitTimesOutAndCancels(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := stream.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded (the input never ended)", err)
	}
	if s := stream.Stopped(); s != nil {
		t.Errorf("Stopped() = %+v after a cancel", s)
	}
}

// A gateway that vanishes (SIGKILL, no goodbye) fails the stream with
// Unavailable, the code the Python and TypeScript SDKs give too (issue 21).
func TestGatewayThatVanishesIsUnavailable(t *testing.T) {
	gw, err := gatewaytest.StartOwn()
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := mediastream.Dial(ctx, gw.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stream, err := client.Listen(ctx, mediastream.Config{CallID: gw.Demo["tone_call"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	gw.Kill()
	killed := time.Now()
	for err == nil {
		_, err = stream.Recv()
	}
	var rpcErr *mediastream.RPCError
	if !errors.As(err, &rpcErr) || rpcErr.Code != codes.Unavailable {
		t.Errorf("after the gateway vanished: %v, want an *RPCError Unavailable", err)
	}
	t.Logf("the stream failed %v after the kill", time.Since(killed))
}

// TestGatewayClearAfterABurstOvertakesIt: a bot's burst of 60 s, a mark, then
// Clear, which goes beside the stream (ControlStream): one Cleared names the
// mark, and the next audio plays right after the cut (nothing of the burst).
func TestGatewayClearAfterABurstOvertakesIt(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Cancel()
	stream.SetWaitWhilePaused(false)
	frame := make([]byte, 320)
	for i := 0; i < 60*50; i++ {
		if err := stream.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Mark("end-of-speech"); err != nil {
		t.Fatal(err)
	}
	if err := stream.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(frame); err != nil {
		t.Fatal(err)
	}
	if err := stream.Mark("after"); err != nil {
		t.Fatal(err)
	}
	var cleared *mediastream.Cleared
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		switch e := ev.(type) {
		case mediastream.Cleared:
			if cleared != nil {
				t.Fatalf("a second Cleared: %+v", e)
			}
			cleared = &e
		case mediastream.MarkPlayed:
			if cleared == nil || len(cleared.DroppedMarks) != 1 || cleared.DroppedMarks[0] != "end-of-speech" {
				t.Fatalf("Cleared = %+v before the mark, want one naming end-of-speech", cleared)
			}
			if e.Name != "after" || e.Position > cleared.Position+80*time.Millisecond {
				t.Fatalf("MarkPlayed = %+v, want after within 80 ms of the cut at %v", e, cleared.Position)
			}
			return
		}
	}
}

// TestGatewayClearOnAnEndedStreamIsEOF: Clear and Hangup on a stream the server
// ended return io.EOF, as the sending methods do.
func TestGatewayClearOnAnEndedStreamIsEOF(t *testing.T) {
	client, gw := dialGateway(t)
	stream, err := client.Stream(testContext(t), mediastream.Config{CallID: gw.Demo["echo_call"], Format: mediastream.FormatSLIN})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Cancel()
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Wait(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := stream.Clear(); err != io.EOF {
		t.Fatalf("Clear after the end = %v, want io.EOF", err)
	}
	if err := stream.Hangup(); err != io.EOF {
		t.Fatalf("Hangup after the end = %v, want io.EOF", err)
	}
}
