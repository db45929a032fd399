"""Command-line options of the latent-bridge extension (the webui calls preload(parser) before parsing)."""

import argparse


def preload(parser):
    try:
        parser.add_argument(
            "--latent-bridge-url",
            type=str,
            default=None,
            help="latent-bridge: WebSocket URL of the sidecar (overrides the setting), e.g. ws://127.0.0.1:7877/ws",
        )
    except argparse.ArgumentError:
        # A second copy of the extension in the same webui added them already; its scripts say so.
        return
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
