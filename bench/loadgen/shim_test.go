package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// The shim's parse_target pattern (server/mediastream/shim/params.py).
var shimUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func TestCallIDsAreUUIDs(t *testing.T) {
	for _, id := range []string{callUUID(0, 0), callUUID(999_999_999, 99_999), callUUID(123456789, 42)} {
		if !shimUUID.MatchString(id) {
			t.Errorf("%q is not a UUID", id)
		}
	}
	if callUUID(1, 2) == callUUID(1, 3) || callUUID(1, 2) == callUUID(2, 2) {
		t.Error("call IDs collide")
	}
}

func TestShimURL(t *testing.T) {
	u := shimURL("127.0.0.1:8080", callUUID(1, 2), "rtp")
	want := "ws://127.0.0.1:8080/v1.0/calls/00000001-be9c-4000-8000-000000000002/media_stream?"
	if !strings.HasPrefix(u, want) || !strings.Contains(u, "encapsulation=rtp") || !strings.Contains(u, "events=json") {
		t.Errorf("got %s", u)
	}
}

// Packets numbered as the gateway numbers its downlink pass; a gap passes
// (the frames count it as lost); going back, another SSRC or a wrong first
// header do not.
func TestShimRTPCheck(t *testing.T) {
	pkt := func(n, ssrc uint32) []byte {
		b := make([]byte, shimRTPHeaderLen+frameBytes)
		putShimRTPHeader(b, n, ssrc)
		b[shimRTPHeaderLen] = byte(n)
		return b
	}
	var k shimRTPCheck
	for _, n := range []uint32{0, 1, 2, 5, 6} {
		p, ok := k.payload(pkt(n, 7))
		if !ok || len(p) != frameBytes || p[0] != byte(n) {
			t.Fatalf("packet %d refused", n)
		}
	}
	if _, ok := k.payload(pkt(6, 7)); ok {
		t.Error("a repeated packet passed")
	}
	if _, ok := k.payload(pkt(3, 7)); ok {
		t.Error("an older packet passed")
	}
	if _, ok := k.payload(pkt(7, 8)); ok {
		t.Error("another SSRC passed")
	}
	bad := pkt(7, 7)
	bad[1] = 0 // payload type 0
	if _, ok := k.payload(bad); ok {
		t.Error("payload type 0 passed")
	}
	var first shimRTPCheck
	if _, ok := first.payload(pkt(1, 7)); ok {
		t.Error("a first packet other than sequence 1, timestamp 0 passed")
	}
	// Sequence numbers wrap after 65535; timestamps keep counting.
	var wrap shimRTPCheck
	wrap.n, wrap.seq, wrap.ts, wrap.ssrc = 1, 65535, 65534*frameBytes, 7
	if _, ok := wrap.payload(pkt(65535, 7)); !ok {
		t.Error("the wrap of the sequence number was refused")
	}
}

// An uplink message carries a test frame as slin that comes back exactly.
func TestShimUplinkFrame(t *testing.T) {
	r := record{dir: dirUp, stream: 3, seq: 77, sendNs: 5_000_000}
	f := make([]byte, frameBytes)
	encodeFrame(f, r)
	msg := make([]byte, shimRTPHeaderLen+2*frameBytes)
	slinFromUlaw(msg[shimRTPHeaderLen:], f)
	putShimRTPHeader(msg, r.seq, 9)
	if !bytes.Equal(msg[:4], []byte{0x80, 0x60, 0, 78}) {
		t.Errorf("header %x", msg[:12])
	}
	back := make([]byte, frameBytes)
	if !ulawFromSlin(back, msg[shimRTPHeaderLen:]) {
		t.Fatal("slin not exact")
	}
	if got, ok := decodeFrame(back); !ok || got != r {
		t.Fatalf("got %+v %v, want %+v", got, ok, r)
	}
}
