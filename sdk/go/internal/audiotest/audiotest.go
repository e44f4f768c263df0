// Package audiotest makes and measures test audio: sines, 16-bit PCM and
// G.711 mu-law conversion, and the dominant frequency of a signal.
package audiotest

import (
	"encoding/binary"
	"math"
	"math/cmplx"
)

// Sine returns seconds*rate samples of a sine of the given frequency and amplitude.
func Sine(hz float64, ms int, rate int, amplitude float64) []float64 {
	n := ms * rate / 1000
	out := make([]float64, n)
	for i := range out {
		out[i] = amplitude * math.Sin(2*math.Pi*hz*float64(i)/float64(rate))
	}
	return out
}

// PCM16 encodes samples as little-endian 16-bit PCM, clipping to the int16 range.
func PCM16(samples []float64) []byte {
	out := make([]byte, 2*len(samples))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(out[2*i:], uint16(int16(clip(s))))
	}
	return out
}

// FromPCM16 decodes little-endian 16-bit PCM.
func FromPCM16(data []byte) []float64 {
	out := make([]float64, len(data)/2)
	for i := range out {
		out[i] = float64(int16(binary.LittleEndian.Uint16(data[2*i:])))
	}
	return out
}

func clip(s float64) float64 {
	return math.Max(-32768, math.Min(32767, math.Round(s)))
}

// ULaw encodes samples as G.711 mu-law.
func ULaw(samples []float64) []byte {
	out := make([]byte, len(samples))
	for i, s := range samples {
		out[i] = ulawEncode(int16(clip(s)))
	}
	return out
}

// FromULaw decodes G.711 mu-law.
func FromULaw(data []byte) []float64 {
	out := make([]float64, len(data))
	for i, b := range data {
		out[i] = float64(ulawDecode(b))
	}
	return out
}

const ulawBias = 0x84

func ulawEncode(sample int16) byte {
	s := int(sample)
	sign := 0
	if s < 0 {
		s, sign = -s, 0x80
	}
	if s > 32635 {
		s = 32635
	}
	s += ulawBias
	exponent := 7
	for mask := 0x4000; s&mask == 0 && exponent > 0; mask >>= 1 {
		exponent--
	}
	mantissa := (s >> (exponent + 3)) & 0x0f
	return ^byte(sign | exponent<<4 | mantissa)
}

func ulawDecode(b byte) int16 {
	u := ^b
	exponent := int(u>>4) & 0x07
	mantissa := int(u & 0x0f)
	s := ((mantissa << 3) + ulawBias) << exponent
	s -= ulawBias
	if u&0x80 != 0 {
		return int16(-s)
	}
	return int16(s)
}

// DominantHz returns the frequency of the strongest spectral peak (DC
// excluded) of a Hann-windowed signal, refined by parabolic interpolation.
func DominantHz(samples []float64, rate int) float64 {
	if len(samples) < 4 {
		return 0
	}
	n := 1
	for n < 2*len(samples) {
		n <<= 1
	}
	buf := make([]complex128, n)
	last := float64(len(samples) - 1)
	for i, s := range samples {
		w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/last)
		buf[i] = complex(s*w, 0)
	}
	fft(buf)
	mag := make([]float64, n/2+1)
	for i := range mag {
		mag[i] = cmplx.Abs(buf[i])
	}
	best := 1
	for i := 2; i < len(mag); i++ {
		if mag[i] > mag[best] {
			best = i
		}
	}
	offset := 0.0
	if best > 1 && best < len(mag)-1 {
		a, b, c := mag[best-1], mag[best], mag[best+1]
		if d := a - 2*b + c; d != 0 {
			offset = 0.5 * (a - c) / d
		}
	}
	return (float64(best) + offset) * float64(rate) / float64(n)
}

// ToneLevel returns the amplitude of the hz component of samples, in sample units.
func ToneLevel(samples []float64, rate int, hz float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	var c, s float64
	for i, x := range samples {
		t := 2 * math.Pi * hz * float64(i) / float64(rate)
		c += x * math.Cos(t)
		s += x * math.Sin(t)
	}
	return 2 * math.Hypot(c, s) / float64(len(samples))
}

// fft is an in-place iterative radix-2 FFT; len(x) must be a power of two.
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		step := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			w := complex(1, 0)
			for k := 0; k < size/2; k++ {
				a, b := x[start+k], w*x[start+k+size/2]
				x[start+k], x[start+k+size/2] = a+b, a-b
				w *= step
			}
		}
	}
}
