package wav

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestReadReturnsWhatWriteWrote(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.wav")
	pcm := []byte{1, 2, 3, 4, 250, 251}
	if err := Write(path, 16000, pcm); err != nil {
		t.Fatal(err)
	}
	rate, got, err := Read(path)
	if err != nil || rate != 16000 || !bytes.Equal(got, pcm) {
		t.Fatalf("Read = %d, %v, %v; want 16000, %v", rate, got, err, pcm)
	}
}
