"""Helpers the tests share, one module per kind.

- `fake_upstream`: the scripted upstream (steps: bytes, `Hold`, `Reset`, `Close`).
- `running_proxy`: the real proxy on a socket, its config document and canary keys; what it logs
  (`finished_lines`, `finished_line`) and counts (`metric`, `scrape`).
- `config_edits`: edits of the config document (`set_defaults`, `set_server`, `add_user`,
  `allow_origins`).
- `request_bodies`: what a client sends, by dialect.
- `sse_builders`: what an upstream sends: events, whole streams, chunkings, `HEARTBEAT`.
- `sse_checks`: parsing what a client received and assertions about it.
- `client_stream`: reading a proxied response with aiohttp (`ClientStream`).
- `raw_http`: a raw HTTP/1.1 client for what aiohttp's client will not do (`RawClient`, also as
  a client that reads slowly or not at all), and a stream read with it (`open_raw_stream`).
- `socket_queues`: the bytes the kernel holds between two sockets, from `/proc/net/tcp`.
- `outcome_checks`: how a request ended, as the proxy's log line, counters and slots say.
- `metrics`: exposition text parsed as Prometheus parses it.
- `waits`: `eventually`, the one bounded poll, and `WAIT_S`.
- `patches`, `ports`, `sdk_clients`: a planted dialect bug and a limiter spy, an unused port,
  the SDKs' clients kept on 127.0.0.1.
"""
