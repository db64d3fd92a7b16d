"""JARL: Joint Adaptive Representations for image-Language learning, in JAX/Flax."""
import setuptools

setuptools.setup(
    name="jarl",
    version="0.1.0",
    description="Joint adaptive image-language fusion (arXiv 2305.19924) in JAX/Flax",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["jarl", "jarl.*"]),
    package_data={"jarl.data": ["assets/*.model"]},
    install_requires=[
        "jax>=0.7.0",
        "flax>=0.11.0",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11.0",
        "grain>=0.2.12",
        "tensorflow-datasets>=4.9.6",
        "sentencepiece>=0.2.0",
        "ml-collections>=1.0.0",
        "clu>=0.0.12",
        "absl-py>=2.1.0",
        "numpy>=1.26",
        "Pillow>=10.0",
        # clu's TensorBoard writer and TFDS builders need TensorFlow; the CPU build suffices.
        "tensorflow-cpu>=2.16.1",
        "tensorboard>=2.16.2",
        "array-record>=0.5.1",
        "pycocoevalcap>=1.2",
    ],
    extras_require={
        "test": ["pytest>=8.0", "pytest-xdist>=3.5", "nbclient>=0.10", "ipykernel>=6.29",
                 "matplotlib>=3.8",
                 # tfds.testing (the TFDS builders' dummy-data tests) imports these.
                 "dill>=0.3.8", "importlib_resources>=6.0"],
        "tpu": ["jax[tpu]>=0.7.0"],
        "gpu": ["jax[cuda12]>=0.7.0"],
    },
)
