package main

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voipbin/mediastream/examples/go/internal/exampletest"
	"github.com/voipbin/mediastream/examples/go/wav"
)

func TestPlaySendsAWAVAtRealTimeAndWaitsForStopped(t *testing.T) {
	gw := exampletest.Ready(t)
	path := filepath.Join(t.TempDir(), "prompt.wav")
	pcm := make([]byte, 2*12000) // 1.5 s of 500 Hz at 8 kHz
	for i := range 12000 {
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(8000*math.Sin(2*math.Pi*500*float64(i)/8000))))
	}
	if err := wav.Write(path, 8000, pcm); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	started := time.Now()
	if err := run(ctx, []string{"-server", gw.GRPC, "-call", gw.Demo["echo_call"], path}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	elapsed := time.Since(started).Seconds()
	t.Log(out.String())
	m := regexp.MustCompile(`prompt\.wav: 1\.50 s of audio in ([\d.]+) s .*stopped: (\w+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output:\n%s", out.String())
	}
	if took, _ := strconv.ParseFloat(m[1], 64); took < 1.4 || took > elapsed {
		t.Errorf("played in %.2f s (run took %.2f s); the gateway paces 1.5 s of audio at real time", took, elapsed)
	}
	if m[2] != "STOP_REASON_CLIENT_DONE" {
		t.Errorf("stopped: %s, want STOP_REASON_CLIENT_DONE", m[2])
	}
}

func TestGateOpensAndCloses(t *testing.T) {
	g := newGate()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.wait(ctx); err != nil {
		t.Fatalf("a new gate is open: %v", err)
	}
	g.set(false)
	if err := g.wait(ctx); err == nil {
		t.Fatal("a paused gate let the sender through")
	}
	g.set(true)
	if err := g.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
