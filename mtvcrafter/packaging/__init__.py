"""Building what ships beside the library: the Blender extension zip."""
