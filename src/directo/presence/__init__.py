"""Who is online: an account with an open event stream on any process."""
