// The preview's microphone tap: runs on the audio thread of a 16 kHz AudioContext and hands the page 16-bit PCM
// chunks of `chunk` samples (10 ms), which the page sends over its WebSocket.
"use strict";
class MicChunks extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunk;
    this.chunk = new Int16Array(this.size);
    this.n = 0;
  }

  process(inputs) {
    const samples = inputs[0] && inputs[0][0];
    if (!samples) return true; // no input connected yet
    for (let i = 0; i < samples.length; i++) {
      const v = Math.max(-1, Math.min(1, samples[i]));
      this.chunk[this.n++] = v < 0 ? v * 32768 : v * 32767;
      if (this.n === this.size) {
        this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
        this.chunk = new Int16Array(this.size);
        this.n = 0;
      }
    }
    return true;
  }
}
registerProcessor("mic-chunks", MicChunks);
