"""The embedded sandbox's pause between streamed events, stated once: `SandboxConfig`, the server and every command
line option that sets it read it. No imports: the command line's help shows it before anything heavy loads."""

#: Seconds between two events of a sandbox stream: slow enough to watch a reply stream in, fast enough for a demo.
DEFAULT_DELAY = 0.02
