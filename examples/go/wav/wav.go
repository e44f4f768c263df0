// Package wav reads and writes the WAV files the examples use: 16-bit
// little-endian PCM, one channel, which is the gateway's slin (8 kHz) and
// slin16 (16 kHz) audio with a 44-byte header in front.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// Write writes pcm (16-bit little-endian mono samples at sampleRate) as a WAV file.
func Write(path string, sampleRate int, pcm []byte) error {
	header := make([]byte, 44)
	copy(header[0:], "RIFF")
	binary.LittleEndian.PutUint32(header[4:], uint32(36+len(pcm)))
	copy(header[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(header[16:], 16)                   // size of the fmt chunk
	binary.LittleEndian.PutUint16(header[20:], 1)                    // PCM
	binary.LittleEndian.PutUint16(header[22:], 1)                    // channels
	binary.LittleEndian.PutUint32(header[24:], uint32(sampleRate))   // samples per second
	binary.LittleEndian.PutUint32(header[28:], uint32(2*sampleRate)) // bytes per second
	binary.LittleEndian.PutUint16(header[32:], 2)                    // bytes per sample frame
	binary.LittleEndian.PutUint16(header[34:], 16)                   // bits per sample
	copy(header[36:], "data")
	binary.LittleEndian.PutUint32(header[40:], uint32(len(pcm)))
	return os.WriteFile(path, append(header, pcm...), 0o644)
}

// Read reads a 16-bit mono PCM WAV file and returns its sample rate and samples.
func Read(path string) (sampleRate int, pcm []byte, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return 0, nil, fmt.Errorf("%s: not a WAV file", path)
	}
	var haveFormat bool
	// After the RIFF header come chunks: a 4-byte ID, a 4-byte size, the body.
	for rest := data[12:]; len(rest) >= 8; {
		id, size := string(rest[0:4]), int(binary.LittleEndian.Uint32(rest[4:8]))
		body := rest[8:]
		if size > len(body) {
			size = len(body) // a truncated file: take what is there
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return 0, nil, fmt.Errorf("%s: short fmt chunk", path)
			}
			format, channels := binary.LittleEndian.Uint16(body[0:]), binary.LittleEndian.Uint16(body[2:])
			bits := binary.LittleEndian.Uint16(body[14:])
			if format != 1 || channels != 1 || bits != 16 {
				return 0, nil, fmt.Errorf("%s: need 16-bit mono PCM, got format %d, %d channels, %d bits", path, format, channels, bits)
			}
			sampleRate, haveFormat = int(binary.LittleEndian.Uint32(body[4:])), true
		case "data":
			if !haveFormat {
				return 0, nil, fmt.Errorf("%s: data before fmt", path)
			}
			return sampleRate, body[:size&^1], nil
		}
		rest = body[min(len(body), size+size%2):] // chunks are padded to an even size
	}
	return 0, nil, errors.New(path + ": no audio data")
}
