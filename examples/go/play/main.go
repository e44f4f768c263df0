// Command play plays a WAV file into a call, at the pace the gateway sets.
//
// A two-way stream: what is sent is heard on the call. The gateway plays one
// 20 ms frame every 20 ms and sends FlowControl events: FlowPause when about
// 8 s of audio wait to be played, FlowResume when there is room again. This
// program sends as fast as the gateway lets it, pausing when asked. CloseSend
// then says nothing more will come; the gateway ends the stream (Stopped,
// StopReasonClientDone) once everything has been played.
//
//	go run ./play -server 127.0.0.1:50051 -call CALL_ID prompt.wav
//
// The WAV file must be 16-bit mono at 8 or 16 kHz.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"

	"github.com/voipbin/mediastream/examples/go/wav"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		var rpcErr *mediastream.RPCError
		if errors.As(err, &rpcErr) {
			fmt.Fprintf(os.Stderr, "refused: %s %s: %s\n", rpcErr.Code, rpcErr.Reason, rpcErr.Message)
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
}

// gate is open while the gateway accepts audio, closed between a FlowPause and
// the FlowResume after it.
type gate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the gate is open
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open: // open now
		if !open {
			g.open = make(chan struct{})
		}
	default: // closed now
		if open {
			close(g.open)
		}
	}
}

// wait returns once the gate is open, or with an error when ctx ends first.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("play", flag.ContinueOnError)
	server := flags.String("server", "127.0.0.1:50051", "the gateway's gRPC host:port")
	callID := flags.String("call", "", "ID of the call to play into (required)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *callID == "" || flags.NArg() != 1 {
		return errors.New("usage: play -call ID [-server HOST:PORT] file.wav")
	}
	path := flags.Arg(0)
	rate, pcm, err := wav.Read(path)
	if err != nil {
		return err
	}
	formats := map[int]mediastream.AudioFormat{8000: mediastream.FormatSLIN, 16000: mediastream.FormatSLIN16}
	format, ok := formats[rate]
	if !ok {
		return fmt.Errorf("%s: need 8000 or 16000 Hz, got %d", path, rate)
	}

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(dialCtx, *server)
	if err != nil {
		return err
	}
	defer client.Close()
	stream, err := client.Stream(ctx, mediastream.Config{CallID: *callID, Format: format})
	if err != nil {
		return err
	}
	defer stream.Close()

	// Read the stream's events in their own goroutine: the FlowControl events
	// steer the sender. (The call's audio arrives here too; it is not needed.)
	flow := newGate()
	pauses := 0
	var stopped *mediastream.Stopped
	received := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				flow.set(true) // never leave the sender waiting on a stream that ended
				if err == io.EOF {
					err = nil
				}
				received <- err
				return
			}
			switch ev := ev.(type) {
			case mediastream.FlowControl:
				if ev.State == mediastream.FlowPause {
					pauses++
					fmt.Fprintf(stdout, "gateway: pause (%s queued)\n", ev.Buffered)
				} else {
					fmt.Fprintf(stdout, "gateway: resume (%s queued)\n", ev.Buffered)
				}
				flow.set(ev.State == mediastream.FlowResume)
			case mediastream.Stopped:
				stopped = &ev
			}
		}
	}()

	started := time.Now()
	frame := int(stream.Info().FrameBytes) // bytes in 20 ms
	for at := 0; at < len(pcm); at += frame {
		if err := flow.wait(ctx); err != nil {
			return err
		}
		if err := stream.Send(pcm[at:min(at+frame, len(pcm))]); err != nil {
			break // io.EOF: the gateway ended the stream; the receiver says why
		}
	}
	if err := stream.CloseSend(); err != nil && err != io.EOF {
		return err
	}
	if err := <-received; err != nil {
		return err
	}
	reason := "no Stopped event"
	if stopped != nil {
		reason = stopped.Reason.String()
	}
	duration := float64(len(pcm)) / 2 / float64(rate)
	fmt.Fprintf(stdout, "played %s: %.2f s of audio in %.2f s (%d pauses); stopped: %s\n",
		path, duration, time.Since(started).Seconds(), pauses, reason)
	return nil
}
