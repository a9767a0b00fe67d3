from setuptools import find_packages, setup

setup(
    name="tflm",
    version="0.1.0",
    description="Causal language models as features for text classification "
    "(Saunshi, Malladi, Arora, ICLR 2021) on Keras 3 / TensorFlow / keras-hub",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tflm", "tflm.*"]),
    include_package_data=True,
    package_data={"tflm": ["assets/gpt2_bpe/*", "data/sst2/*"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<3.16",
        "keras-hub==0.32.*",
        "tensorflow-datasets>=4.9",
        "tensorboard>=2.20",
        "scikit-learn>=1.5",
        "numpy>=1.26",
        "tokenizers>=0.22,<0.23",
        "safetensors>=0.4",
        "gguf>=0.19",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "torch==2.13.0", "transformers==4.57.6", "accelerate>=1.0"],
        # bench/real_lm.py: transformers reads the SmolLM2 GGUF through accelerate
        "bench": ["torch==2.13.0", "transformers==4.57.6", "accelerate>=1.0"],
    },
    entry_points={"console_scripts": ["tflm=tflm.cli:main"]},
)
