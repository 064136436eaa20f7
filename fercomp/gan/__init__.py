"""Class-conditional GAN augmentation (document 000): train an AC-GAN, sample labelled faces, score them."""
