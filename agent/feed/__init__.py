"""The release feed: format, signatures, verification and building."""
