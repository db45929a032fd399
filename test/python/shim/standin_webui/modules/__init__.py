"""The stand-in webui's modules package (never reloaded, as in the webui)."""
