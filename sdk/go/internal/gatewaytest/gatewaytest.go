// Package gatewaytest runs a real mediastream gateway (with its embedded
// Asterisk emulator) for tests: `python -m mediastream.cli serve` from the
// repository root, through uv.
//
// If MEDIASTREAM_READY holds the gateway's JSON ready line, that running
// gateway is used instead and nothing is started.
package gatewaytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ReadyEnv names the environment variable with the ready line of a gateway
// that is already running.
const ReadyEnv = "MEDIASTREAM_READY"

// Gateway is a running gateway.
type Gateway struct {
	// GRPC is the host:port of its gRPC endpoint.
	GRPC string
	// Demo maps the names of the emulator's demo calls (tone_call, echo_call,
	// dtmf_call, conference) to their IDs.
	Demo map[string]string

	cmd    *exec.Cmd
	stderr *syncBuffer
}

type readyLine struct {
	GRPC string            `json:"grpc"`
	Demo map[string]string `json:"demo"`
}

// Start starts a gateway on a free port, or returns the one named by
// MEDIASTREAM_READY, and waits for its ready line.
func Start() (*Gateway, error) {
	if line := os.Getenv(ReadyEnv); line != "" {
		var ready readyLine
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			return nil, fmt.Errorf("gatewaytest: %s: %w", ReadyEnv, err)
		}
		return &Gateway{GRPC: ready.GRPC, Demo: ready.Demo}, nil
	}
	return start()
}

// StartOwn starts a gateway of its own, even when MEDIASTREAM_READY names
// one, with its gRPC, metrics and WebSocket endpoints on free ports and extra
// appended to its command line (a later flag overrides an earlier one).
func StartOwn(extra ...string) (*Gateway, error) {
	return start(append([]string{"--metrics-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"}, extra...)...)
}

func start(extra ...string) (*Gateway, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	args := []string{"run", "--frozen", "python", "-m", "mediastream.cli", "serve",
		"--grpc-listen", "127.0.0.1:0", "--log-level", "WARNING"}
	args = append(args, extra...)
	var cmd *exec.Cmd
	if uv, err := exec.LookPath("uv"); err == nil {
		cmd = exec.Command(uv, args...)
	} else {
		cmd = exec.Command("python3", append([]string{"-m", "uv"}, args...)...)
	}
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "UV_PYTHON_DOWNLOADS=never")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gatewaytest: start %v: %w", cmd.Args, err)
	}
	g := &Gateway{cmd: cmd, stderr: stderr}
	lines := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		if scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
		for scanner.Scan() { // keep draining so the gateway never blocks on stdout
		}
	}()
	select {
	case line, ok := <-lines:
		var ready readyLine
		if !ok {
			g.Stop()
			return nil, fmt.Errorf("gatewaytest: gateway exited before it was ready:\n%s", stderr.String())
		}
		if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.GRPC == "" {
			g.Stop()
			return nil, fmt.Errorf("gatewaytest: bad ready line %q: %v", line, err)
		}
		g.GRPC, g.Demo = ready.GRPC, ready.Demo
		return g, nil
	case <-time.After(90 * time.Second):
		g.Stop()
		return nil, fmt.Errorf("gatewaytest: no ready line after 90 s:\n%s", stderr.String())
	}
}

// Stop ends the gateway (SIGTERM to its process group, SIGKILL after 15 s)
// if Start started it.
func (g *Gateway) Stop() error {
	if g == nil || g.cmd == nil || g.cmd.Process == nil {
		return nil
	}
	pgid := -g.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil // terminated by our signal
		}
		return err
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		return <-done
	}
}

// Kill SIGKILLs the gateway's process group (a gateway that vanishes) if
// Start started it; Stop afterwards reaps it.
func (g *Gateway) Kill() {
	if g != nil && g.cmd != nil && g.cmd.Process != nil {
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Stderr returns what the gateway wrote to its standard error so far.
func (g *Gateway) Stderr() string {
	if g.stderr == nil {
		return ""
	}
	return g.stderr.String()
}

// RepoRoot finds the repository root (the directory holding proto/ and
// pyproject.toml) from the working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("gatewaytest: repository root not found above the working directory")
		}
		dir = parent
	}
}

func isRoot(dir string) bool {
	for _, name := range []string{"pyproject.toml", "proto/voipbin/mediastream/v1"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return false
		}
	}
	return true
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
