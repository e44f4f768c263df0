package mediastream

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrBothTargets is what errors.Is finds in the *ConfigError of a Config that
// names both a call and a conference (reason BOTH_TARGETS).
var ErrBothTargets = errors.New("mediastream: set only one of CallID and ConferenceID")

// ConfigError is a Config refused by the client before anything is sent. Its
// Reason and Field are the names the server uses for the same mistake
// (MISSING_TARGET on config.target); BOTH_TARGETS (a call and a conference)
// cannot reach the server at all, the target being a oneof on the wire.
// The Python SDK raises ConfigError and the TypeScript SDK throws ConfigError
// for the same configs, with the same reasons.
type ConfigError struct {
	// Reason is a stable identifier: MISSING_TARGET or BOTH_TARGETS.
	Reason string
	// Field is the path of the wrong field, such as "config.target".
	Field string
	// Message says what is wrong.
	Message string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("mediastream: invalid config: %s (%s)", e.Message, e.Reason)
}

// Unwrap returns ErrBothTargets for BOTH_TARGETS, so errors.Is(err, ErrBothTargets) holds.
func (e *ConfigError) Unwrap() error {
	if e.Reason == ReasonBothTargets {
		return ErrBothTargets
	}
	return nil
}

// Reasons of a ConfigError.
const (
	ReasonMissingTarget = "MISSING_TARGET"
	ReasonBothTargets   = "BOTH_TARGETS"
)

// ErrEncapsulation is returned by the audio adapters of a stream whose chunks
// are not bare samples.
var ErrEncapsulation = errors.New("mediastream: audio adapters need bare samples (EncapsulationSLN)")

// FieldViolation names one wrong request field, from the server's BadRequest detail.
type FieldViolation struct {
	// Field is the path of the field, such as "config.chunk_ms".
	Field string
	// Description says what is wrong with it.
	Description string
}

// RPCError is a non-OK status from the server, with its google.rpc.Status details.
type RPCError struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the server's message.
	Message string
	// Reason is ErrorInfo.reason, a stable identifier such as "CALL_NOT_FOUND".
	Reason string
	// Domain is ErrorInfo.domain.
	Domain string
	// Metadata is ErrorInfo.metadata.
	Metadata map[string]string
	// FieldViolations lists BadRequest.field_violations (for InvalidArgument).
	FieldViolations []FieldViolation

	status *status.Status
}

// Error implements error.
func (e *RPCError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("mediastream: %s: %s (%s)", e.Code, e.Message, e.Reason)
	}
	return fmt.Sprintf("mediastream: %s: %s", e.Code, e.Message)
}

// GRPCStatus returns the status the error was made from, so status.FromError
// and status.Code work on it.
func (e *RPCError) GRPCStatus() *status.Status {
	return e.status
}

// Unwrap returns context.Canceled for codes.Canceled and
// context.DeadlineExceeded for codes.DeadlineExceeded, so that
// errors.Is(err, context.Canceled) and errors.Is(err, context.DeadlineExceeded)
// hold for a stream ended by its context (or cancelled by the server), as they
// do for the rest of Go; otherwise nil.
func (e *RPCError) Unwrap() error {
	switch e.Code {
	case codes.Canceled:
		return context.Canceled
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	}
	return nil
}

// Field returns the first field violation's field path, or "" if there is none.
func (e *RPCError) Field() string {
	if len(e.FieldViolations) == 0 {
		return ""
	}
	return e.FieldViolations[0].Field
}

// AsRPCError converts an error returned by gRPC into an *RPCError. io.EOF and
// nil are returned unchanged, as are errors that already are *RPCError. A
// context error becomes an RPCError with codes.Canceled or DeadlineExceeded.
func AsRPCError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var already *RPCError
	if errors.As(err, &already) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		switch {
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		default:
			st = status.New(codes.Unknown, err.Error())
		}
	}
	return newRPCError(st)
}

func newRPCError(st *status.Status) *RPCError {
	e := &RPCError{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain, e.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	return e
}

func protocolError(format string, args ...any) *RPCError {
	return newRPCError(status.Newf(codes.Internal, "mediastream: "+format, args...))
}
