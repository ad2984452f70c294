"""Everything that talks to the Hub: publishing, discovery, validation, and the local Hub server."""
