"""The models a box serves: the catalog of what is on it, discovery of saves/ trees, and the
registry that loads and routes them."""
