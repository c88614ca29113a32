"""Does the answer come from the audio? Diagnostic runs under audio conditions, their measures and figures."""
