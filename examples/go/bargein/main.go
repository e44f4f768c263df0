// Command bargein speaks into a call and stops speaking when the caller
// presses a key.
//
// A voice bot sends its prompt ahead of time, marking the end of each
// sentence. When the caller interrupts (here: a DTMF digit; a bot would also
// detect speech in the call's audio), the bot calls Clear: the gateway drops
// everything still queued and answers with a Cleared event saying where
// playback was cut and which marks were dropped, i.e. which sentences the
// caller never heard.
//
//	go run ./bargein -server 127.0.0.1:50051 -call CALL_ID -seconds 10
//
// The demo dtmf_call presses 1, 2, # every 2 s: a ready-made impatient caller.
// A tone stands in for the bot's speech.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"time"

	mediastream "github.com/voipbin/mediastream/sdk/go"
)

const (
	// sentence is the length of one "sentence" of the prompt; a mark follows each.
	sentence = time.Second
	// lead is how far ahead of playback the prompt is sent: what a barge-in
	// drops. It stays under the 8 s at which the gateway asks to pause.
	lead = 3 * time.Second
	// rate is the sample rate of FormatSLIN.
	rate = 8000
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

// tone returns d of a 500 Hz tone as 16-bit little-endian samples: the bot's "speech".
func tone(d time.Duration) []byte {
	n := int(d.Seconds() * rate)
	out := make([]byte, 2*n)
	for i := range n {
		s := int16(8000 * math.Sin(2*math.Pi*500*float64(i)/rate))
		binary.LittleEndian.PutUint16(out[2*i:], uint16(s))
	}
	return out
}

// speak sends the prompt, sentences long, a mark after each sentence, at most
// lead ahead of playback. It returns when done or when ctx is cancelled (the
// caller barged in). The stream's sending methods are safe to call from
// another goroutine than Recv.
func speak(ctx context.Context, stream *mediastream.DuplexStream, sentences int) error {
	frame := int(stream.Info().FrameBytes) // 20 ms
	words := tone(sentence)
	start := time.Now()
	var sent time.Duration
	for n := 1; n <= sentences; n++ {
		for at := 0; at < len(words); at += frame {
			if ahead := sent - time.Since(start); ahead > lead {
				select {
				case <-time.After(ahead - lead):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				return nil // interrupted: say nothing more
			}
			if err := stream.Send(words[at : at+frame]); err != nil {
				return err
			}
			sent += 20 * time.Millisecond
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := stream.Mark(fmt.Sprintf("sentence-%d", n)); err != nil {
			return err
		}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("bargein", flag.ContinueOnError)
	server := flags.String("server", "127.0.0.1:50051", "the gateway's gRPC host:port")
	callID := flags.String("call", "", "ID of the call to speak into (required)")
	seconds := flags.Float64("seconds", 10, "length of the prompt")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *callID == "" || flags.NArg() != 0 {
		return errors.New("usage: bargein -call ID [-server HOST:PORT] [-seconds N]")
	}
	sentences := max(1, int(math.Round(*seconds/sentence.Seconds())))

	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client, err := mediastream.Dial(dialCtx, *server)
	if err != nil {
		return err
	}
	defer client.Close()
	stream, err := client.Stream(ctx, mediastream.Config{CallID: *callID, Format: mediastream.FormatSLIN})
	if err != nil {
		return err
	}
	defer stream.Close()

	fmt.Fprintf(stdout, "speaking %d sentences of %s into %s\n", sentences, sentence, *callID)
	speaking, interrupt := context.WithCancel(ctx)
	defer interrupt()
	spoken := make(chan error, 1)
	go func() { spoken <- speak(speaking, stream, sentences) }()
	var speakErr error
	speakerDone := false
	waitSpeaker := func() error { // waits until the speaker has returned
		if !speakerDone {
			speakErr, speakerDone = <-spoken, true
		}
		return speakErr
	}

	finished := false // CloseSend was called: no Clear after it
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return waitSpeaker() // the stream has ended
		}
		if err != nil {
			return err
		}
		switch ev := ev.(type) {
		case mediastream.MarkPlayed:
			fmt.Fprintf(stdout, "played %s (at %d ms)\n", ev.Name, ev.Position.Milliseconds())
			if ev.Name == fmt.Sprintf("sentence-%d", sentences) {
				fmt.Fprintln(stdout, "the caller heard the whole prompt")
				finished = true
				if err := stream.CloseSend(); err != nil {
					return err
				}
			}
		case mediastream.DTMF:
			if speaking.Err() != nil || finished {
				continue // already interrupted, or done
			}
			fmt.Fprintf(stdout, "caller pressed %s: barge-in\n", ev.Digit)
			interrupt() // stop the speaker,
			if err := waitSpeaker(); err != nil {
				return err
			}
			if err := stream.Clear(); err != nil { // then drop what it queued
				return err
			}
		case mediastream.Cleared:
			dropped := strings.Join(ev.DroppedMarks, ", ")
			if dropped == "" {
				dropped = "none"
			}
			fmt.Fprintf(stdout, "cleared at %d ms; dropped marks: %s\n", ev.Position.Milliseconds(), dropped)
			finished = true
			if err := stream.CloseSend(); err != nil { // nothing queued: the stream stops
				return err
			}
		case mediastream.Stopped:
			fmt.Fprintf(stdout, "stopped: %s\n", ev.Reason)
		}
	}
}
