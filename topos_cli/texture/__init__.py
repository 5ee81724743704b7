"""Photo textures in a template's UV space: UV rasterization, projection, de-lighting, completion, PBR maps."""
