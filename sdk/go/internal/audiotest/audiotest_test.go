package audiotest

import (
	"math"
	"testing"
)

func TestDominantHzFindsTheTone(t *testing.T) {
	for _, hz := range []float64{300, 440, 1000, 3000} {
		got := DominantHz(Sine(hz, 1000, 8000, 8000), 8000)
		if math.Abs(got-hz) > 1 {
			t.Errorf("DominantHz(sine %v Hz) = %v", hz, got)
		}
	}
}

func TestULawRoundTripKeepsTheSignal(t *testing.T) {
	tone := Sine(440, 200, 8000, 10000)
	back := FromULaw(ULaw(tone))
	for i := range tone {
		if math.Abs(back[i]-tone[i]) > 0.04*10000 {
			t.Fatalf("sample %d: %v -> %v", i, tone[i], back[i])
		}
	}
	// Reference points of G.711: 0 is 0xFF, full negative scale is 0x00.
	if got := ULaw([]float64{0, -32768}); got[0] != 0xff || got[1] != 0x00 {
		t.Errorf("ULaw(0, -32768) = %x", got)
	}
}

func TestPCM16RoundTripAndLevel(t *testing.T) {
	tone := Sine(1000, 100, 8000, 8000)
	back := FromPCM16(PCM16(tone))
	if lvl := ToneLevel(back, 8000, 1000); math.Abs(lvl-8000) > 50 {
		t.Errorf("ToneLevel = %v, want about 8000", lvl)
	}
	if lvl := ToneLevel(back, 8000, 440); lvl > 200 {
		t.Errorf("ToneLevel at 440 Hz of a 1 kHz tone = %v", lvl)
	}
}
