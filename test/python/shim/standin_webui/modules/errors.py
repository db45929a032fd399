"""modules/errors.py: the webui reports script failures and carries on; here they are also kept."""

import traceback

reported = []


def report(message, *, exc_info=False):
    text = message + ("\n" + traceback.format_exc() if exc_info else "")
    reported.append(text)
    print(text)
