// Package exampletest has what the examples' tests share: the gateway they
// run against and a way to measure a tone.
package exampletest

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// Gateway is the gateway named by MEDIASTREAM_READY (its JSON ready line),
// which `make sdk-test` starts for every SDK's tests. Without it the test is
// skipped; to run the examples' tests alone:
//
//	uv run python tests/conformance/with_gateway.py -- sh -c 'cd examples/go && go test ./...'
type Gateway struct {
	// GRPC is the host:port of the gateway's gRPC endpoint.
	GRPC string `json:"grpc"`
	// Demo maps the demo calls' names (tone_call, echo_call, dtmf_call) to their IDs.
	Demo map[string]string `json:"demo"`
}

// Ready returns the gateway of MEDIASTREAM_READY, or skips t.
func Ready(t *testing.T) Gateway {
	t.Helper()
	line := os.Getenv("MEDIASTREAM_READY")
	if line == "" {
		t.Skip("needs a gateway: run through `make sdk-test` or tests/conformance/with_gateway.py")
	}
	var gw Gateway
	if err := json.Unmarshal([]byte(line), &gw); err != nil {
		t.Fatalf("MEDIASTREAM_READY: %v", err)
	}
	return gw
}

// DominantHz returns the frequency, in 5 Hz steps from 50 Hz to half the
// sample rate, at which 16-bit little-endian pcm has the most energy.
func DominantHz(pcm []byte, sampleRate int) float64 {
	samples := make([]float64, len(pcm)/2)
	for i := range samples {
		samples[i] = float64(int16(binary.LittleEndian.Uint16(pcm[2*i:])))
	}
	best, bestPower := 0.0, -1.0
	for hz := 50.0; hz < float64(sampleRate)/2; hz += 5 {
		// Goertzel: the power of one frequency.
		coeff := 2 * math.Cos(2*math.Pi*hz/float64(sampleRate))
		var s1, s2 float64
		for _, x := range samples {
			s1, s2 = x+coeff*s1-s2, s1
		}
		if power := s1*s1 + s2*s2 - coeff*s1*s2; power > bestPower {
			best, bestPower = hz, power
		}
	}
	return best
}
