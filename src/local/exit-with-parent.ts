// Preloaded into every emulator child process: when the parent goes away (its end of the stdin
// pipe closes), the child exits too, so no emulator outlives the process that started it.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
// Watching the pipe must not keep a child alive that is done otherwise (Azurite after SIGINT).
(process.stdin as { unref?: () => void }).unref?.();
