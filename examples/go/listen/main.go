// Command listen writes a call's audio to a WAV file.
//
// It is the shape of a transcriber: a listen-only stream (nothing is played
// into the call), audio in 100 ms chunks of 16-bit 8 kHz samples (what most
// speech recognisers take), each chunk handled as it arrives.
//
//	go run ./listen -server 127.0.0.1:50051 -call CALL_ID -seconds 5 out.wav
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"

	"github.com/voipbin/mediastream/examples/go/wav"
)

// chunkMS is the chunk size: any multiple of 20 ms up to 200 ms.
const chunkMS = 100

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		var rpcErr *mediastream.RPCError
		if errors.As(err, &rpcErr) {
			// The gateway's refusal: a gRPC code and a stable reason, e.g. NotFound CALL_NOT_FOUND.
			fmt.Fprintf(os.Stderr, "refused: %s %s: %s\n", rpcErr.Code, rpcErr.Reason, rpcErr.Message)
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("listen", flag.ContinueOnError)
	server := flags.String("server", "127.0.0.1:50051", "the gateway's gRPC host:port")
	callID := flags.String("call", "", "ID of the call to listen to (required)")
	seconds := flags.Float64("seconds", 5, "how much to record")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *callID == "" || flags.NArg() != 1 {
		return errors.New("usage: listen -call ID [-server HOST:PORT] [-seconds N] out.wav")
	}
	path := flags.Arg(0)

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(dialCtx, *server)
	if err != nil {
		return err
	}
	defer client.Close()

	// Listen returns once the gateway has confirmed the stream; a refusal is an *RPCError.
	stream, err := client.Listen(ctx, mediastream.Config{
		CallID:  *callID,
		Format:  mediastream.FormatSLIN, // 16-bit little-endian samples at 8 kHz
		ChunkMS: chunkMS,
	})
	if err != nil {
		return err
	}
	defer stream.Close() // ends the stream if we stop early
	info := stream.Info()
	fmt.Fprintf(stdout, "listening to %s: stream %s, %d Hz, %d ms chunks\n",
		*callID, info.StreamID, info.SampleRateHz, info.ChunkMS)

	var audio []byte
	chunks := 0
	for want := int(*seconds * 1000 / chunkMS); chunks < want; {
		ev, err := stream.Recv()
		if err == io.EOF {
			break // the stream ended: the call hung up
		}
		if err != nil {
			return err
		}
		// Recv also returns DTMF and, last, Stopped; a transcriber wants the audio.
		if chunk, ok := ev.(mediastream.AudioChunk); ok {
			audio = append(audio, chunk.Data...) // a transcriber would send chunk.Data on here
			chunks++
		}
	}
	stream.Close()

	if err := wav.Write(path, int(info.SampleRateHz), audio); err != nil {
		return err
	}
	written := float64(len(audio)) / 2 / float64(info.SampleRateHz)
	fmt.Fprintf(stdout, "wrote %s: %.2f s in %d chunks of %d ms\n", path, written, chunks, chunkMS)
	return nil
}
