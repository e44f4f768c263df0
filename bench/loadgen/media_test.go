package main

import "testing"

// Values of the gateway's core/g711.ulaw_decode.
func TestUlawMatchesGateway(t *testing.T) {
	want := map[byte]int16{0x00: -32124, 0x07: -24956, 0x20: -7932, 0x2f: -4092, 0x7f: 0, 0x80: 32124, 0xf8: 56, 0xff: 0}
	for u, v := range want {
		if ulawToLinear[u] != v {
			t.Errorf("ulaw 0x%02x -> %d, want %d", u, ulawToLinear[u], v)
		}
	}
}

func TestFrameRoundTripThroughSlin(t *testing.T) {
	r := record{dir: dirUp, stream: 1234, seq: 99999, k: 4, sendNs: 1234567890123}
	f := make([]byte, frameBytes)
	encodeFrame(f, r)
	slin := make([]byte, 2*frameBytes)
	slinFromUlaw(slin, f)
	back := make([]byte, frameBytes)
	if !ulawFromSlin(back, slin) {
		t.Fatal("slin not exact")
	}
	got, ok := decodeFrame(back)
	if !ok || got != r {
		t.Fatalf("got %+v %v, want %+v", got, ok, r)
	}
}
