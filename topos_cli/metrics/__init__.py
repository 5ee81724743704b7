"""Evaluation: geometry metrics over file pairs, image metrics (PSNR, SSIM, LPIPS, FID, KID, CSIM)."""
