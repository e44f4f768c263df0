package main

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voipbin/mediastream/examples/go/internal/exampletest"
	"github.com/voipbin/mediastream/examples/go/wav"
)

func TestListenWritesTheToneCallToAWAV(t *testing.T) {
	gw := exampletest.Ready(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "tone.wav")
	var out strings.Builder
	if err := run(ctx, []string{"-server", gw.GRPC, "-call", gw.Demo["tone_call"], "-seconds", "1", path}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !strings.Contains(out.String(), "tone.wav: 1.00 s in 10 chunks of 100 ms") {
		t.Errorf("output:\n%s", out.String())
	}
	rate, pcm, err := wav.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 8000 || len(pcm) != 16000 {
		t.Errorf("got %d Hz, %d bytes; want 8000 Hz, 16000 bytes", rate, len(pcm))
	}
	if hz := exampletest.DominantHz(pcm, rate); math.Abs(hz-440) > 5 {
		t.Errorf("dominant frequency %.0f Hz, want 440", hz)
	}
}

func TestListenNeedsACall(t *testing.T) {
	if err := run(context.Background(), []string{"out.wav"}, &strings.Builder{}); err == nil {
		t.Fatal("no error without -call")
	}
}
