// How every client script ends: `main` runs against a deadline, and what it
// recorded in `out` (its errors too) is printed as the last line, as JSON;
// the test reads that line. Past the deadline, `timed_out` is set and the
// exit status is 2. `settleMs` lets final disconnects go out first.
export function report(out, main, timeoutMs, settleMs = 0) {
  const timer = setTimeout(() => {
    out.timed_out = true;
    console.log(JSON.stringify(out));
    process.exit(2);
  }, timeoutMs);
  main()
    .catch((error) => out.errors.push(`main: ${error.message || error}`))
    .finally(() => {
      clearTimeout(timer);
      setTimeout(() => {
        console.log(JSON.stringify(out));
        process.exit(0);
      }, settleMs);
    });
}
