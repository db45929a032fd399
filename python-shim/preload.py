"""Command-line options of the latent-bridge extension (the webui calls preload(parser) before parsing)."""


def preload(parser):
    parser.add_argument(
        "--latent-bridge-url",
        type=str,
        default=None,
        help="latent-bridge: WebSocket URL of the sidecar (overrides the setting), e.g. ws://127.0.0.1:7877/ws",
    )
    parser.add_argument(
        "--latent-bridge-token",
        type=str,
        default=None,
        help="latent-bridge: token the sidecar was started with (overrides the setting)",
    )
    parser.add_argument(
        "--latent-bridge-autostart",
        type=str,
        choices=["on", "off"],
        default=None,
        help="latent-bridge: start the sidecar with Node.js when it is not running (overrides the setting)",
    )
