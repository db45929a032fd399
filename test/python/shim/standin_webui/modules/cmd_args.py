"""modules/cmd_args.py: the webui's own command-line options (a few); extensions add theirs in preload."""

import argparse


def make_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nowebui", action="store_true")
    parser.add_argument("--lowvram", action="store_true")
    return parser
