// Package mediastream is a Go client for the mediastream gateway, which streams
// the live audio of Asterisk calls and conferences over gRPC.
//
// Listen to a call:
//
//	client, err := mediastream.Dial(ctx, "127.0.0.1:50051")
//	if err != nil { ... }
//	defer client.Close()
//	stream, err := client.Listen(ctx, mediastream.Config{CallID: id, Format: mediastream.FormatSLIN})
//	if err != nil { ... }
//	defer stream.Close()
//	for {
//		ev, err := stream.Recv()
//		if err == io.EOF {
//			break
//		}
//		if err != nil { ... }
//		switch ev := ev.(type) {
//		case mediastream.AudioChunk:
//			handle(ev.Data)
//		case mediastream.Stopped:
//			log.Println("stopped:", ev.Reason)
//		}
//	}
//
// Talk into a call with [Client.Stream]: the [DuplexStream] adds Send,
// SendDTMF, Mark, Clear, Hangup and CloseSend. [Stream.AudioReader] and
// [DuplexStream.AudioWriter] adapt a stream's audio to io.Reader and io.Writer.
//
//	stream, err := client.Stream(ctx, mediastream.Config{CallID: id, Format: mediastream.FormatSLIN})
//	if err != nil { ... }
//	defer stream.Close() // after CloseSend: waits until what was sent has played
//	for _, frame := range frames {
//		if err := stream.Send(frame); err != nil { ... }
//	}
//	stream.CloseSend()
//
// Which call waits for what: Send returns once gRPC has taken the chunk, not
// when it has played (a Mark's MarkPlayed event reports that). CloseSend only
// ends the input; the server then plays what it has and sends Stopped
// (StopReasonClientDone). [DuplexStream.Close] after CloseSend waits for that
// Stopped, at most the audio still to play plus [DefaultCloseGrace], reading
// the events itself when no goroutine is in Recv; without CloseSend it cancels
// the stream at once, as [Stream.Cancel] always does. [Stream.Wait] waits for
// the end with a context of your own.
//
// Send waits while the gateway has asked the client to pause (a
// [FlowControl] FlowPause, at 8 s of audio waiting to be played, until
// FlowResume under 4 s), provided a goroutine receives the events, where the
// pause is seen; [DuplexStream.SetWaitWhilePaused] turns the wait off. Control
// (Mark, Clear, SendDTMF, Hangup, CloseSend) never waits. Clear and Hangup go
// beside the stream (the ControlStream RPC), so they never wait behind audio
// sent before them either.
//
// Every error the server returns is an [*RPCError] carrying the gRPC code and
// the google.rpc.Status details (ErrorInfo reason, domain and metadata;
// BadRequest field violations). A stream ended by its context is also that
// context's error (errors.Is(err, context.Canceled) or
// context.DeadlineExceeded). A Config the client can tell is wrong is a
// [*ConfigError] with the server's reason name, before anything is sent:
//
//	var rpcErr *mediastream.RPCError
//	if errors.As(err, &rpcErr) && rpcErr.Reason == "CALL_NOT_FOUND" { ... }
//
// The Example functions of this package run in its tests against a real
// gateway, so their output is checked.
//
// # Auto-resume
//
// With [Config].AutoResume, a stream whose connection drops is resumed by
// Recv itself (resume token, last sequence number, the advertised instance,
// the client's open retries), within the server's resume grace; the audio's
// sequence numbers stay contiguous and [Stream.Resumes] counts the resumes,
// as Python's auto_resume and TypeScript's autoResume do.
//
//	stream, err := client.Listen(ctx, mediastream.Config{CallID: id, AutoResume: true})
//
// # Behind a load balancer
//
// When several gateway instances share one address, a resumable stream lives
// on one of them: [StreamInfo].InstanceAddress names it, and
// [Stream.ResumeFrom] copies it into [Resume].InstanceAddress. A Listen or
// Stream with that Resume dials the instance directly, with the client's dial
// options, and keeps the connection until [Client.Close]; a resume refused
// with RESUME_WRONG_INSTANCE is retried once at the instance the server names,
// if [WithAllowedInstances] (or [AllowInstances]) allows that address; a forged
// token can make a server name any address:
//
//	resume := stream.ResumeFrom()
//	again, err := client.Listen(ctx, mediastream.Config{CallID: id, Resumable: true, Resume: resume})
//
// The generated protobuf and gRPC code is in the mediastreamv1 subpackage.
package mediastream
