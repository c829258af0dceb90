"""lazy-hasty: rescaled, linearized and feature-learning training from one init.

Reproduces George, Lajoie & Baratin, "Lazy vs hasty: linearization in deep
networks impacts learning schedule based on example difficulty" (TMLR 2022).
"""

__version__ = "0.1.0"
