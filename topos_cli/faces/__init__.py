"""Faces in photos: detection and dense landmarks (mediapipe face mesh), and the portrait crop."""
