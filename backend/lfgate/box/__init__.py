"""Box access: reach the box (SSH or this machine), place the wrapper there, run it, and talk
to it over the wrapper protocol. Nothing above this package touches asyncssh or processes."""
