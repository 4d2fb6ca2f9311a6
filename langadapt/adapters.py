"""Old home of the adapter-chain loader, kept so that code importing from here keeps working.

Everything lives in :mod:`langadapt.loading` (loading) and :mod:`langadapt.metadata` (the metadata files); import
from there in new code.
"""

from langadapt.loading import (  # noqa: F401
    apply_adapter, check_adapter_rows, grow_embeddings, load_tokenizer_for, load_with_adapters,
    resolve_adapter_chain, retie_or_untie,
)
from langadapt.metadata import ADAPTER_CONFIG, METADATA_FILES, copy_metadata, is_adapter_dir  # noqa: F401
