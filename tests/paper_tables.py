"""Numbers printed in the papers, shared by the tests that check against them."""

import numpy as np

# FAML-FGA-T2V, Table 3: the six members' outputs for one RAF-DB image, [members, 1 image, 7 classes]
# (classes in RAF-DB order: anger, disgust, fear, happiness, neutral, sadness, surprise).
FAML_TABLE_3 = np.array(
    [
        [0.295, 0.138, -1.331, 0.917, -1.429, -0.502, -0.712],
        [0.312, 0.058, -1.383, 0.888, -1.426, -0.547, -0.495],
        [0.187, -0.119, -0.835, 1.715, -1.240, -0.118, -1.127],
        [1.518, -0.168, -1.641, 0.489, -1.482, -0.985, -0.491],
        [0.798, -0.210, -1.823, 0.753, -1.308, -0.582, -1.493],
        [0.403, -0.433, -1.392, -0.637, -0.493, -0.131, -1.072],
    ]
)[:, None, :]
