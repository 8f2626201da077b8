// Microphone -> 16 kHz mono PCM16 frames of 100 ms, posted to the page.
// Resampling: each output sample averages the input samples of its interval (a box
// low-pass), enough for speech recognition at 16 kHz from 44.1/48 kHz input.
class PcmWorklet extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;
    this.acc = 0; this.count = 0; this.pos = 0;
    this.frame = new Int16Array(1600); this.fill = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || !input[0]) return true;
    const channels = input.length, n = input[0].length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      this.acc += x / channels; this.count++; this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        const v = Math.max(-1, Math.min(1, this.acc / this.count));
        this.frame[this.fill++] = v < 0 ? v * 32768 : v * 32767;
        this.acc = 0; this.count = 0;
        if (this.fill === this.frame.length) {
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(1600); this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("pcm-worklet", PcmWorklet);
