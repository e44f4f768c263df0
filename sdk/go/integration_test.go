package mediastream_test

import (
	"errors"
	"io"
	"math"
	"testing"

	"google.golang.org/grpc/codes"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/audiotest"
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
