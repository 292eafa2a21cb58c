// CLIP
