package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voipbin/mediastream/examples/go/internal/exampletest"
)

func TestBargeInClearsWhenTheCallerPressesAKey(t *testing.T) {
	gw := exampletest.Ready(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, []string{"-server", gw.GRPC, "-call", gw.Demo["dtmf_call"], "-seconds", "6"}, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	if !regexp.MustCompile(`caller pressed [12#]: barge-in`).MatchString(out.String()) {
		t.Errorf("no barge-in:\n%s", out.String())
	}
	m := regexp.MustCompile(`cleared at (\d+) ms; dropped marks: (.*)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no Cleared:\n%s", out.String())
	}
	if at, _ := strconv.Atoi(m[1]); at >= 6000 {
		t.Errorf("cleared at %d ms, after the end of a 6 s prompt", at)
	}
	// The prompt runs 3 s ahead of playback: at least the sentence being played is
	// dropped. The demo caller presses its keys every 2 s from a phase of its own, so it
	// may barge in during the first sentence, before that sentence's mark was sent (its
	// frames go first); only then may no mark be dropped.
	if at, _ := strconv.Atoi(m[1]); m[2] == "none" && at >= 1000 {
		t.Errorf("no mark dropped, yet cut at %d ms, after the first sentence", at)
	} else if m[2] != "none" && !strings.HasPrefix(m[2], "sentence-") {
		t.Errorf("dropped marks %q", m[2])
	}
	if !strings.HasSuffix(strings.TrimSpace(out.String()), "stopped: STOP_REASON_CLIENT_DONE") {
		t.Errorf("did not end with client_done:\n%s", out.String())
	}
}
