"use strict";
// mocha's spec output, closed by the plain line CI counts:
// "N passed, N failed, N skipped". Pending tests are the skipped ones; a
// test that skips prints its reason through this.skip() callers' console.log.
const Mocha = require("mocha");
const { EVENT_RUN_END } = Mocha.Runner.constants;

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once(EVENT_RUN_END, () => {
      const s = runner.stats ?? {};
      // Deferred so it lands after Spec's own epilogue.
      process.nextTick(() => {
        console.log(`${s.passes ?? 0} passed, ${s.failures ?? 0} failed, ${s.pending ?? 0} skipped`);
      });
    });
  }
}
module.exports = SummaryReporter;
