package mediastream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"
	"github.com/voipbin/mediastream/sdk/go/internal/gatewaytest"
)

// The examples run against the test run's gateway (its embedded Asterisk
// emulator and demo calls): gatewayAddress stands for your gateway's host:port
// (`make run` serves 127.0.0.1:50051), toneCall and echoCall for call IDs.

func exampleGateway() *gatewaytest.Gateway {
	gatewayOnce.Do(func() { gateway, gatewayErr = gatewaytest.Start() })
	if gatewayErr != nil {
		panic(gatewayErr)
	}
	return gateway
}

func gatewayAddress() string { return exampleGateway().GRPC }

var (
	toneCall = func() string { return exampleGateway().Demo["tone_call"] }
	echoCall = func() string { return exampleGateway().Demo["echo_call"] }
)

// Listen to a call: the demo tone call's audio, in 20 ms chunks of 16-bit 8 kHz samples.
func ExampleClient_Listen() {
	ctx := context.Background()
	client, err := mediastream.Dial(ctx, gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	stream, err := client.Listen(ctx, mediastream.Config{CallID: toneCall(), Format: mediastream.FormatSLIN})
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	fmt.Println("format:", stream.Info().Format, "bytes per chunk:", stream.Info().ChunkBytes())
	chunks := 0
	for chunks < 50 { // one second
		ev, err := stream.Recv()
		if err != nil {
			panic(err)
		}
		if _, ok := ev.(mediastream.AudioChunk); ok {
			chunks++
		}
	}
	fmt.Println("chunks:", chunks)
	// Output:
	// format: AUDIO_FORMAT_SLIN bytes per chunk: 320
	// chunks: 50
}

// Talk into a call: audio, then a mark that is reported once that audio has
// played; then the end of input, after which the stream stops with CLIENT_DONE.
func ExampleClient_Stream() {
	ctx := context.Background()
	client, err := mediastream.Dial(ctx, gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	stream, err := client.Stream(ctx, mediastream.Config{CallID: echoCall(), Format: mediastream.FormatSLIN})
	if err != nil {
		panic(err)
	}
	defer stream.Close() // after CloseSend: waits until what was sent has played
	silence := make([]byte, stream.Info().ChunkBytes())
	for range 20 { // 400 ms
		if err := stream.Send(silence); err != nil {
			panic(err)
		}
	}
	if err := stream.Mark("greeting-done"); err != nil {
		panic(err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			panic(err)
		}
		if m, ok := ev.(mediastream.MarkPlayed); ok {
			fmt.Println("mark", m.Name, "played at", m.Position)
			break
		}
	}
	if err := stream.CloseSend(); err != nil {
		panic(err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		if s, ok := ev.(mediastream.Stopped); ok {
			fmt.Println("stopped:", s.Reason)
		}
	}
	// Output:
	// mark greeting-done played at 400ms
	// stopped: STOP_REASON_CLIENT_DONE
}

// Every error from the server is an *RPCError with the google.rpc.Status
// details: here the reason and metadata of an unknown call.
func ExampleRPCError() {
	ctx := context.Background()
	client, err := mediastream.Dial(ctx, gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	_, err = client.Listen(ctx, mediastream.Config{CallID: "no-such-call"})
	var rpcErr *mediastream.RPCError
	if errors.As(err, &rpcErr) {
		fmt.Println(rpcErr.Code, rpcErr.Reason, rpcErr.Metadata["call_id"])
	}
	// Output:
	// NotFound CALL_NOT_FOUND no-such-call
}

// A stream ended by its context is an error that is the context's error.
func ExampleRPCError_Unwrap() {
	client, err := mediastream.Dial(context.Background(), gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	stream, err := client.Listen(ctx, mediastream.Config{CallID: toneCall()})
	for err == nil {
		_, err = stream.Recv()
	}
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	// Output:
	// true
}

// A config the client can tell is wrong is refused before anything is sent,
// with the server's name for the mistake.
func ExampleConfigError() {
	client, err := mediastream.Dial(context.Background(), gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	_, err = client.Stream(context.Background(), mediastream.Config{Format: mediastream.FormatSLIN})
	var cfgErr *mediastream.ConfigError
	if errors.As(err, &cfgErr) {
		fmt.Println(cfgErr.Reason, cfgErr.Field)
	}
	// Output:
	// MISSING_TARGET config.target
}

// Send waits while the gateway has paused the stream, as long as a goroutine
// receives the events (where the pause is seen). SetWaitWhilePaused(false)
// turns that off; Paused reports the state. (Not run: it takes seconds.)
func ExampleDuplexStream_SetWaitWhilePaused() {
	ctx := context.Background()
	client, err := mediastream.Dial(ctx, gatewayAddress())
	if err != nil {
		panic(err)
	}
	defer client.Close()
	stream, err := client.Stream(ctx, mediastream.Config{CallID: echoCall(), Format: mediastream.FormatSLIN})
	if err != nil {
		panic(err)
	}
	defer stream.Close()
	go func() { // the events: this is where FlowControl pauses are seen
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	frame := make([]byte, stream.Info().ChunkBytes())
	for range 500 { // 10 s of audio, sent as fast as the gateway lets it
		if err := stream.Send(frame); err != nil {
			panic(err)
		}
	}
	fmt.Println("sent 10 s; paused now:", stream.Paused())
	if err := stream.CloseSend(); err != nil {
		panic(err)
	}
}
