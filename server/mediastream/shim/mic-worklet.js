// The page's microphone capture (page.html): an AudioWorkletProcessor that posts
// every block of the first input channel to the page, which downsamples it to 8 kHz.
class MicCapture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
