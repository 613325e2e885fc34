"""Channel clients behind one `ChannelProvider` interface."""
