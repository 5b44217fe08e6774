# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""Random streams per sample: augmentations that a resumed run replays.

A data loader worker draws each sample's augmentations (a flip, a crop, a
scale) from its process's generators, which run on from sample to sample.
What a sample gets therefore depends on the worker that loads it and on
everything that worker loaded before: a run resumed from a checkpoint
starts its workers afresh and augments differently from the run it
continues, whenever the workers were not restarted at that point too
(``persistent_workers=True``, mmdet's COCO default, keeps them across
epochs; a run resumed in mid-epoch re-reads the epoch's first batches).

Here the stream of each sample is a function of where it stands in
training instead: :class:`SeededSampler` wraps the config's sampler and
tags every index it yields with ``(seed, epoch, index, n)`` (``n``: how often
that index came before in the epoch, for samplers that repeat one, such
as ``InfiniteSampler``); :class:`SeededDataset` wraps the dataset and,
before it loads a sample, seeds torch, numpy and ``random`` from that tag.
The tag travels with the index to whichever process loads it, so a
sample's augmentations are the same with any number of workers, persistent
or not, in the main process, on any rank, and after any resume.

``tools/train.py`` wraps every training loader so
(:func:`use_sample_streams`); :class:`~projects.res2net.engine.hooks.\
ExactResumeHook` seeds each training step the same way.
"""
from collections import Counter
from typing import Any, Iterator, Mapping, Optional, Tuple, Union

from mmengine.dist import sync_random_seed
# mmengine's root registries: found from mmdet's scope and from any other;
# what they wrap is built in the scope of the run (mmdet's samplers and
# datasets in mmdet's configs).
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Dataset, Sampler

from ..engine.hooks import reseed

# Position domains of reseed(): 0 an epoch, 1 an iteration (ExactResumeHook).
SAMPLE = 2


class SampleIndex(int):
    """A dataset index that carries the random stream of its sample.

    It is an ``int`` for everything that reads it (batch samplers group it
    by the image's aspect ratio, the data loader sends it to a worker);
    :class:`SeededDataset` reads its :attr:`stream`.

    Args:
        index: The index in the dataset.
        stream: The entropy the sample's generators are seeded from.
    """

    stream: Tuple[int, ...]

    def __new__(cls, index: int, stream: Tuple[int, ...]) -> 'SampleIndex':
        value = super().__new__(cls, index)
        value.stream = stream
        return value

    def __reduce__(self):
        # To a loader worker through a queue: the stream goes with it.
        return SampleIndex, (int(self), self.stream)


@DATA_SAMPLERS.register_module()
class SeededSampler(Sampler):
    """A sampler that tags each index it yields with the sample's stream.

    The order is the wrapped sampler's; each index becomes a
    :class:`SampleIndex` whose stream is ``(seed, epoch, index, n)``: the
    wrapped sampler's seed (the run's, the same on every rank), the epoch
    (:meth:`set_epoch`, called by mmengine before each epoch), the index
    and ``n``, how often the index was yielded before in this pass.

    Args:
        sampler: The sampler to wrap (``DefaultSampler``,
            ``InfiniteSampler``, ...), or its config, which gets
            ``dataset`` and ``seed`` as mmengine's Runner gives them.
        dataset: The dataset, given by the Runner.
        seed: The seed the Runner gives samplers (None: a random one,
            shared by the ranks).
    """

    tags_samples = True  # ExactResumeHook checks it

    def __init__(self,
                 sampler: Union[dict, Sampler],
                 dataset: Dataset,
                 seed: Optional[int] = None) -> None:
        self.sampler = DATA_SAMPLERS.build(
            sampler, default_args=dict(dataset=dataset, seed=seed)) \
            if isinstance(sampler, dict) else sampler
        self.dataset = dataset  # batch samplers read image sizes from it
        seed = getattr(self.sampler, 'seed', seed)
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0

    def __iter__(self) -> Iterator[SampleIndex]:
        seen: Counter = Counter()
        for index in self.sampler:
            index = int(index)
            yield SampleIndex(index, (self.seed, SAMPLE, self.epoch, index,
                                      seen[index]))
            seen[index] += 1

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (mmengine's ``DistSamplerSeedHook``
        calls it before each epoch)."""
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


@DATASETS.register_module()
class SeededDataset:
    """A dataset that seeds torch, numpy and ``random`` before each sample
    from the stream its index carries (:class:`SampleIndex`).

    Everything else is the wrapped dataset's: its length, data infos and
    metainfo, and any attribute a sampler or hook reads from it. An index
    without a stream (a plain ``int``) loads as it would unwrapped.

    Args:
        dataset: The dataset, or its config.
    """

    seeds_samples = True  # ExactResumeHook checks it

    def __init__(self, dataset: Union[dict, Dataset]) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset,
                                                             dict) else dataset

    def __getitem__(self, index: int) -> Any:
        stream = getattr(index, 'stream', None)
        if stream is not None:
            reseed(*stream, devices=False)
        return self.dataset[int(index)]

    def __len__(self) -> int:
        return len(self.dataset)

    def get_data_info(self, index: int) -> dict:
        return self.dataset.get_data_info(int(index))

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def __getattr__(self, name: str) -> Any:
        # Only reached for what this class lacks; not for `dataset` itself,
        # which pickle asks for before it is set.
        if name == 'dataset' or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def use_sample_streams(cfg: Mapping) -> None:
    """Give each sample of ``cfg``'s training loader its own random stream:
    wrap its sampler in :class:`SeededSampler` and its dataset in
    :class:`SeededDataset` (once: a config dumped by a run already has
    them). Keys such as ``train_dataloader.dataset.ann_file`` are read
    before, as the user wrote them."""
    loader = cfg.get('train_dataloader')
    if not loader or loader.get('sampler') is None or loader.get(
            'dataset') is None:
        return  # nothing to train, or a loader mmengine cannot build
    for key, wrapper in (('sampler', SeededSampler), ('dataset',
                                                      SeededDataset)):
        part = loader[key]
        wrapped = isinstance(
            part, wrapper) or (isinstance(part, Mapping)
                               and part.get('type') == wrapper.__name__)
        if not wrapped:
            loader[key] = dict(type=wrapper.__name__, **{key: part})
