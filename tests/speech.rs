//! Speech only where someone speaks (voice activity before Whisper), on real files.
