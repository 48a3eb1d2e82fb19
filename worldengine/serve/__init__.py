"""Serving live worlds over websockets: the wire protocol's socket side, shared by every host.

`socket.drive_socket` runs one live session over one aiohttp-style websocket (controls in, frames out,
status, rate-limited errors). The ComfyUI routes (`nodes/live/routes.py`) and any standalone server call
it after they have decided *which* session a socket may drive; the message format itself is
`worldengine.live.protocol`. Many players across devices: `ray_app` (Ray Serve deployment, the [serve]
extra), `host` (one replica's engine, sessions and admission, no Ray), `asgi` (an ASGI websocket seen
as the aiohttp one), `router` (placement by session count), `config` (ServeConfig). See docs/serving.md.
"""
