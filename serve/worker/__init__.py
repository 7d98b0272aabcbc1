"""The inference side: what runs in LitServe's spawned workers, and the server that supervises them."""
